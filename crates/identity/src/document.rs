//! DID documents: where one lives (`did:plc` through the PLC directory,
//! `did:web` at the host's `/.well-known/did.json`) and what atproto reads
//! from it: the `#atproto` signing key, the handle claimed in `alsoKnownAs`,
//! the `#atproto_pds` and `#atproto_labeler` endpoints, the `#atproto_label`
//! key and any other service by id.

use std::collections::BTreeMap;

use serde_json::Value;
use skyhose_proto::crypto::{Curve, KeyError, PublicKey, P256_PUB, SECP256K1_PUB};

use crate::guard::{Origin, Policy, Refused};

#[derive(Debug, Clone, thiserror::Error)]
pub enum DocumentError {
    #[error("DID method not supported (did:plc and did:web are)")]
    Method,
    #[error("not a valid {0} identifier")]
    Syntax(&'static str),
    #[error("did:web host refused: {0}")]
    Refused(#[from] Refused),
    #[error("bad DID document: {0}")]
    Invalid(String),
}

/// One `service` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub kind: String,
    pub endpoint: String,
}

/// What atproto uses of a DID document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDocument {
    pub did: String,
    /// `#atproto`: signs the repo and the account's service-auth tokens.
    pub signing_key: Option<PublicKey>,
    /// The first `at://` entry of `alsoKnownAs`, lowercased; a claim until
    /// the handle resolves back to the DID.
    pub handle: Option<String>,
    /// `#atproto_pds`.
    pub pds: Option<String>,
    /// `#atproto_labeler`.
    pub labeler: Option<String>,
    /// `#atproto_label`: signs the labels of a labeler.
    pub label_key: Option<PublicKey>,
    /// Every service by its id fragment (`atproto_pds`, ...).
    pub services: BTreeMap<String, Service>,
}

/// The URL of `did`'s document.
pub fn document_url(did: &str, plc_url: &str, policy: &Policy) -> Result<String, DocumentError> {
    if let Some(id) = did.strip_prefix("did:plc:") {
        let valid = id.len() == 24 && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
        if !valid {
            return Err(DocumentError::Syntax("did:plc"));
        }
        return Ok(format!("{}/{did}", plc_url.trim_end_matches('/')));
    }
    if let Some(host) = did.strip_prefix("did:web:") {
        // atproto uses host-only did:web; a port is percent-encoded.
        let authority = host.replace("%3A", ":").replace("%3a", ":");
        if authority.is_empty() || authority.contains(['/', '%', '@', '?', '#']) {
            return Err(DocumentError::Syntax("did:web"));
        }
        let Origin(origin) = policy.origin(&authority)?;
        return Ok(format!("{origin}/.well-known/did.json"));
    }
    Err(DocumentError::Method)
}

/// Parses `document`, after checking it is really `did`'s.
pub fn parse(did: &str, document: &[u8]) -> Result<DidDocument, DocumentError> {
    let invalid = |s: String| DocumentError::Invalid(s);
    let doc: Value =
        serde_json::from_slice(document).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let id = doc.get("id").and_then(Value::as_str);
    if id != Some(did) {
        return Err(invalid(format!(
            "its id is {:?}, not the DID asked for",
            id.unwrap_or_default().chars().take(256).collect::<String>()
        )));
    }
    let fragment = |entry: &Value| -> Option<String> {
        let id = entry.get("id").and_then(Value::as_str)?;
        let frag = id.strip_prefix(did).unwrap_or(id).strip_prefix('#')?;
        Some(frag.to_owned())
    };
    let mut signing_key = None;
    let mut label_key = None;
    for method in array(&doc, "verificationMethod") {
        let slot = match fragment(method).as_deref() {
            Some("atproto") => &mut signing_key,
            Some("atproto_label") => &mut label_key,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        let name = fragment(method).unwrap_or_default();
        let kind = method.get("type").and_then(Value::as_str).unwrap_or("");
        let multibase = method
            .get("publicKeyMultibase")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("#{name} has no publicKeyMultibase")))?;
        let key = verification_key(kind, multibase)
            .map_err(|e| invalid(format!("#{name} publicKeyMultibase: {e}")))?;
        *slot = Some(key);
    }
    let handle = array(&doc, "alsoKnownAs")
        .filter_map(Value::as_str)
        .find_map(|aka| aka.strip_prefix("at://"))
        .map(|h| h.to_ascii_lowercase());
    let mut services = BTreeMap::new();
    for service in array(&doc, "service") {
        let (Some(id), Some(kind), Some(endpoint)) = (
            fragment(service),
            service.get("type").and_then(Value::as_str),
            service.get("serviceEndpoint").and_then(Value::as_str),
        ) else {
            continue;
        };
        services.entry(id).or_insert(Service {
            kind: kind.to_owned(),
            endpoint: endpoint.to_owned(),
        });
    }
    let endpoint = |id: &str| services.get(id).map(|s| s.endpoint.clone());
    Ok(DidDocument {
        did: did.to_owned(),
        signing_key,
        handle,
        pds: endpoint("atproto_pds"),
        labeler: endpoint("atproto_labeler"),
        label_key,
        services,
    })
}

fn array<'a>(doc: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    doc.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A verification method's key. `Multikey` holds a multicodec-prefixed
/// compressed point; the older `EcdsaSecp256k1VerificationKey2019` and
/// `EcdsaSecp256r1VerificationKey2019` (still served by `@did-plc/server`
/// and older did:web documents) hold the bare SEC1 point, compressed or
/// not, though some writers put the multicodec prefix there too.
pub fn verification_key(kind: &str, multibase: &str) -> Result<PublicKey, KeyError> {
    let (curve, prefix) = match kind {
        "EcdsaSecp256k1VerificationKey2019" => (Curve::K256, SECP256K1_PUB),
        "EcdsaSecp256r1VerificationKey2019" => (Curve::P256, P256_PUB),
        _ => return PublicKey::from_multikey(multibase),
    };
    let encoded = multibase.strip_prefix('z').ok_or(KeyError::NotMultibase)?;
    let bytes = bs58::decode(encoded)
        .into_vec()
        .map_err(|_| KeyError::Base58)?;
    match bytes.strip_prefix(&prefix) {
        Some(point) if matches!(point.len(), 33 | 65) => PublicKey::from_sec1(curve, point),
        _ => PublicKey::from_sec1(curve, &bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skyhose_proto::crypto::SigningKey;

    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const TESTS: Policy = Policy {
        allow_loopback: true,
    };
    const PUBLIC: Policy = Policy {
        allow_loopback: false,
    };

    fn doc(id: &str, vm_id: &str, kind: &str, multibase: &str) -> Vec<u8> {
        json!({
            "id": id,
            "alsoKnownAs": ["https://elsewhere", "at://Alice.Example.com"],
            "verificationMethod": [
                {"id": format!("{id}#other"), "type": "Multikey", "publicKeyMultibase": "zzz"},
                {"id": vm_id, "type": kind, "controller": id, "publicKeyMultibase": multibase},
            ],
            "service": [
                {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example.com"},
                {"id": format!("{id}#atproto_labeler"), "type": "AtprotoLabeler", "serviceEndpoint": "https://labels.example.com"},
                {"id": "#bsky_chat", "type": "BskyChatService", "serviceEndpoint": "https://chat.example.com"},
                {"id": "#broken"},
            ],
        })
        .to_string()
        .into_bytes()
    }

    fn keys() -> [SigningKey; 2] {
        [
            SigningKey::from_bytes(Curve::K256, &[0x11; 32]).unwrap(),
            SigningKey::from_bytes(Curve::P256, &[0x22; 32]).unwrap(),
        ]
    }

    fn z(bytes: &[u8]) -> String {
        format!("z{}", bs58::encode(bytes).into_string())
    }

    #[test]
    fn document_urls() {
        assert_eq!(
            document_url(DID, "https://plc.directory/", &PUBLIC).unwrap(),
            format!("https://plc.directory/{DID}")
        );
        assert_eq!(
            document_url("did:web:example.com", "", &PUBLIC).unwrap(),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            document_url("did:web:localhost%3A8080", "", &TESTS).unwrap(),
            "http://localhost:8080/.well-known/did.json"
        );
        assert_eq!(
            document_url("did:web:127.0.0.1%3a9", "", &TESTS).unwrap(),
            "http://127.0.0.1:9/.well-known/did.json"
        );
        for bad in [
            "did:plc:short",
            "did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ",
            "did:web:example.com:path",
            "did:web:exa/mple.com",
            "did:web:host%3Aport",
            "did:web:user%40example.com",
            "did:web:",
            "did:key:zQ3sh",
        ] {
            assert!(document_url(bad, "http://plc", &TESTS).is_err(), "{bad}");
        }
        for refused in [
            "did:web:127.0.0.1%3A8080",
            "did:web:localhost",
            "did:web:10.0.0.1",
            "did:web:example.com%3A8443",
            "did:web:%5B%3A%3A1%5D",
            "did:web:metadata.internal",
        ] {
            assert!(
                document_url(refused, "https://plc.directory", &PUBLIC).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn reads_multikey_documents_with_services_and_handle() {
        for key in keys() {
            let public = key.public_key();
            for vm_id in ["#atproto".to_owned(), format!("{DID}#atproto")] {
                let parsed =
                    parse(DID, &doc(DID, &vm_id, "Multikey", &public.to_multikey())).unwrap();
                assert_eq!(parsed.signing_key, Some(public.clone()));
                assert_eq!(parsed.handle.as_deref(), Some("alice.example.com"));
                assert_eq!(parsed.pds.as_deref(), Some("https://pds.example.com"));
                assert_eq!(
                    parsed.labeler.as_deref(),
                    Some("https://labels.example.com")
                );
                assert_eq!(parsed.services["bsky_chat"].kind, "BskyChatService");
                assert!(!parsed.services.contains_key("broken"));
                assert_eq!(parsed.label_key, None);
            }
        }
    }

    #[test]
    fn reads_legacy_verification_methods() {
        let [k, p] = keys();
        let cases = [
            ("EcdsaSecp256k1VerificationKey2019", &k, SECP256K1_PUB),
            ("EcdsaSecp256r1VerificationKey2019", &p, P256_PUB),
        ];
        for (kind, key, prefix) in cases {
            let public = key.public_key();
            let (compressed, uncompressed) = match &public {
                PublicKey::K256(v) => (
                    v.to_encoded_point(true).as_bytes().to_vec(),
                    v.to_encoded_point(false).as_bytes().to_vec(),
                ),
                PublicKey::P256(v) => (
                    v.to_encoded_point(true).as_bytes().to_vec(),
                    v.to_encoded_point(false).as_bytes().to_vec(),
                ),
            };
            let prefixed: Vec<u8> = prefix.iter().chain(&compressed).copied().collect();
            for encoded in [z(&compressed), z(&uncompressed), z(&prefixed)] {
                let parsed = parse(DID, &doc(DID, "#atproto", kind, &encoded)).unwrap();
                assert_eq!(parsed.signing_key, Some(public.clone()), "{kind} {encoded}");
            }
        }
        // The legacy type fixes the curve: a P-256 point under the
        // secp256k1 type is refused.
        let err =
            verification_key("EcdsaSecp256k1VerificationKey2019", &z(&[9u8; 33])).unwrap_err();
        assert_eq!(err, KeyError::BadPoint("secp256k1"));
    }

    #[test]
    fn refuses_wrong_ids_and_bad_keys_and_allows_a_missing_key() {
        let mb = keys()[0].public_key().to_multikey();
        let err = parse(
            DID,
            &doc(
                "did:plc:someoneelse234567abcdefg",
                "#atproto",
                "Multikey",
                &mb,
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("someoneelse"), "{err}");
        // Only #atproto signs: a key under another id is not it.
        let other = parse(DID, &doc(DID, "#atproto_label", "Multikey", &mb)).unwrap();
        assert_eq!(other.signing_key, None);
        assert!(other.label_key.is_some());
        let other = parse(
            DID,
            &doc(
                DID,
                "did:plc:someoneelse234567abcdefg#atproto",
                "Multikey",
                &mb,
            ),
        )
        .unwrap();
        assert_eq!(other.signing_key, None);
        let err = parse(DID, &doc(DID, "#atproto", "Multikey", "zbad")).unwrap_err();
        assert!(err.to_string().contains("publicKeyMultibase"), "{err}");
        let err = parse(DID, b"<html>").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
        let bare = parse(DID, json!({"id": DID}).to_string().as_bytes()).unwrap();
        assert_eq!(
            (bare.signing_key, bare.handle, bare.pds),
            (None, None, None)
        );
    }
}
