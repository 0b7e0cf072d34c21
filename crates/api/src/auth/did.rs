//! A DID's atproto signing key: where its document lives (`did:plc` through
//! the PLC directory, `did:web` at the host's `/.well-known/did.json`), and the
//! `#atproto` verification method in it.

use k256::ecdsa::signature::Verifier;
use serde_json::Value;

use super::fetch::{FetchError, Fetcher};
use super::jwt::Alg;

/// Multicodec varint prefixes of compressed public keys in a `Multikey`.
const SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];
const P256_PUB: [u8; 2] = [0x80, 0x24];

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("DID method not supported (did:plc and did:web are)")]
    Method,
    #[error("not a valid {0} identifier")]
    Syntax(&'static str),
    #[error("DID not found")]
    NotFound,
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("bad DID document: {0}")]
    Document(String),
}

#[derive(Clone, Debug)]
pub enum PublicKey {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    pub fn alg(&self) -> Alg {
        match self {
            PublicKey::K256(_) => Alg::Es256k,
            PublicKey::P256(_) => Alg::Es256,
        }
    }

    /// ECDSA-SHA256 over `msg` with a 64-byte r||s signature. atproto accepts
    /// only low-S signatures (on both curves), so high-S ones fail here even
    /// though they are mathematically valid.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::K256(key) => {
                let Ok(sig) = k256::ecdsa::Signature::from_slice(sig) else {
                    return false;
                };
                sig.normalize_s().is_none() && key.verify(msg, &sig).is_ok()
            }
            PublicKey::P256(key) => {
                let Ok(sig) = p256::ecdsa::Signature::from_slice(sig) else {
                    return false;
                };
                sig.normalize_s().is_none() && key.verify(msg, &sig).is_ok()
            }
        }
    }
}

/// `z` + base58btc of a multicodec-prefixed compressed key.
pub fn parse_multikey(multibase: &str) -> Result<PublicKey, String> {
    let encoded = multibase
        .strip_prefix('z')
        .ok_or("publicKeyMultibase is not base58btc (no leading z)")?;
    let bytes = bs58::decode(encoded)
        .into_vec()
        .map_err(|e| format!("publicKeyMultibase is not base58btc: {e}"))?;
    if let Some(point) = bytes.strip_prefix(&SECP256K1_PUB) {
        return k256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(PublicKey::K256)
            .map_err(|_| "publicKeyMultibase is not a secp256k1 point".into());
    }
    if let Some(point) = bytes.strip_prefix(&P256_PUB) {
        return p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(PublicKey::P256)
            .map_err(|_| "publicKeyMultibase is not a P-256 point".into());
    }
    Err("publicKeyMultibase is neither a secp256k1 nor a P-256 key".into())
}

/// The URL of `did`'s document.
pub fn document_url(did: &str, plc_url: &str) -> Result<String, ResolveError> {
    if let Some(id) = did.strip_prefix("did:plc:") {
        let valid = id.len() == 24 && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
        if !valid {
            return Err(ResolveError::Syntax("did:plc"));
        }
        return Ok(format!("{}/{did}", plc_url.trim_end_matches('/')));
    }
    if let Some(host) = did.strip_prefix("did:web:") {
        // atproto uses host-only did:web; a port is percent-encoded.
        let host = host.replace("%3A", ":").replace("%3a", ":");
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host.as_str(), None),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        let port_ok = match port {
            None => true,
            Some(p) => p.parse::<u16>().is_ok(),
        };
        if !name_ok || !port_ok {
            return Err(ResolveError::Syntax("did:web"));
        }
        // Plain HTTP only where nothing can sit in between: loopback tests.
        let scheme = if matches!(name, "localhost" | "127.0.0.1") {
            "http"
        } else {
            "https"
        };
        return Ok(format!("{scheme}://{host}/.well-known/did.json"));
    }
    Err(ResolveError::Method)
}

/// The `#atproto` key of `did` from its document, after checking the document
/// is really `did`'s.
pub fn signing_key(did: &str, document: &[u8]) -> Result<PublicKey, ResolveError> {
    let doc: Value = serde_json::from_slice(document)
        .map_err(|e| ResolveError::Document(format!("not JSON: {e}")))?;
    let id = doc.get("id").and_then(Value::as_str);
    if id != Some(did) {
        return Err(ResolveError::Document(format!(
            "its id is {:?}, not the DID asked for",
            id.unwrap_or_default().chars().take(256).collect::<String>()
        )));
    }
    let full_id = format!("{did}#atproto");
    let method = doc
        .get("verificationMethod")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| {
            m.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id == "#atproto" || id == full_id)
        })
        .ok_or_else(|| ResolveError::Document("no #atproto verification method".into()))?;
    let multibase = method
        .get("publicKeyMultibase")
        .and_then(Value::as_str)
        .ok_or_else(|| ResolveError::Document("#atproto has no publicKeyMultibase".into()))?;
    parse_multikey(multibase).map_err(ResolveError::Document)
}

pub struct Resolver {
    plc_url: String,
    fetcher: Fetcher,
}

impl Resolver {
    pub fn new(plc_url: String, fetcher: Fetcher) -> Self {
        Resolver { plc_url, fetcher }
    }

    pub async fn resolve(&self, did: &str) -> Result<PublicKey, ResolveError> {
        let url = document_url(did, &self.plc_url)?;
        let body = self.fetcher.get(&url).await.map_err(|e| match e {
            FetchError::Status(404 | 410) => ResolveError::NotFound,
            e => ResolveError::Fetch(e),
        })?;
        signing_key(did, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::signature::Signer;
    use serde_json::json;

    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

    fn multikey(prefix: [u8; 2], point: &[u8]) -> String {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(point);
        format!("z{}", bs58::encode(bytes).into_string())
    }

    fn k256_key() -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap()
    }

    fn p256_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap()
    }

    fn doc(id: &str, vm_id: &str, multibase: &str) -> Vec<u8> {
        json!({
            "id": id,
            "verificationMethod": [
                {"id": format!("{id}#other"), "type": "Multikey", "publicKeyMultibase": "zzz"},
                {"id": vm_id, "type": "Multikey", "controller": id, "publicKeyMultibase": multibase},
            ],
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn parses_both_curves_and_verifies_low_s_only() {
        let k = k256_key();
        let mb = multikey(
            SECP256K1_PUB,
            k.verifying_key().to_encoded_point(true).as_bytes(),
        );
        let key = parse_multikey(&mb).unwrap();
        assert_eq!(key.alg(), Alg::Es256k);
        let sig: k256::ecdsa::Signature = k.sign(b"msg");
        let low = sig.normalize_s().unwrap_or(sig);
        assert!(key.verify(b"msg", &low.to_bytes()));
        assert!(!key.verify(b"other", &low.to_bytes()));
        // The same signature with s replaced by n - s: valid ECDSA, but high-S.
        let high = k256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
        assert!(!key.verify(b"msg", &high.to_bytes()));
        assert!(!key.verify(b"msg", &[0u8; 63]));

        let p = p256_key();
        let mb = multikey(
            P256_PUB,
            p.verifying_key().to_encoded_point(true).as_bytes(),
        );
        let key = parse_multikey(&mb).unwrap();
        assert_eq!(key.alg(), Alg::Es256);
        let sig: p256::ecdsa::Signature = p.sign(b"msg");
        let low = sig.normalize_s().unwrap_or(sig);
        assert!(key.verify(b"msg", &low.to_bytes()));
        let high = p256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
        assert!(!key.verify(b"msg", &high.to_bytes()));
    }

    #[test]
    fn rejects_bad_multikeys() {
        for (mb, want) in [
            ("Q3shabc".to_owned(), "no leading z"),
            ("z0OIl".to_owned(), "base58btc"),
            (multikey([0xed, 0x01], &[1; 32]), "neither"),
            (multikey(SECP256K1_PUB, &[9; 33]), "secp256k1 point"),
            (multikey(P256_PUB, &[2; 10]), "P-256 point"),
        ] {
            let err = parse_multikey(&mb).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn document_urls() {
        assert_eq!(
            document_url(DID, "https://plc.directory/").unwrap(),
            format!("https://plc.directory/{DID}")
        );
        assert_eq!(
            document_url("did:web:example.com", "").unwrap(),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            document_url("did:web:localhost%3A8080", "").unwrap(),
            "http://localhost:8080/.well-known/did.json"
        );
        assert_eq!(
            document_url("did:web:127.0.0.1%3a9", "").unwrap(),
            "http://127.0.0.1:9/.well-known/did.json"
        );
        for bad in [
            "did:plc:short",
            "did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ",
            "did:web:example.com:path",
            "did:web:exa/mple.com",
            "did:web:host%3Aport",
            "did:web:",
            "did:key:zQ3sh",
        ] {
            assert!(document_url(bad, "http://plc").is_err(), "{bad}");
        }
    }

    #[test]
    fn finds_the_atproto_key_and_checks_the_id() {
        let k = k256_key();
        let mb = multikey(
            SECP256K1_PUB,
            k.verifying_key().to_encoded_point(true).as_bytes(),
        );
        for vm_id in ["#atproto".to_owned(), format!("{DID}#atproto")] {
            let key = signing_key(DID, &doc(DID, &vm_id, &mb)).unwrap();
            assert_eq!(key.alg(), Alg::Es256k);
        }
        let err = signing_key(
            DID,
            &doc("did:plc:someoneelse234567abcdefg", "#atproto", &mb),
        )
        .unwrap_err();
        assert!(err.to_string().contains("someoneelse"), "{err}");
        let err = signing_key(DID, &doc(DID, "#atproto_label", &mb)).unwrap_err();
        assert!(err.to_string().contains("no #atproto"), "{err}");
        let err = signing_key(DID, &doc(DID, "#atproto", "zbad")).unwrap_err();
        assert!(err.to_string().contains("publicKeyMultibase"), "{err}");
        let err = signing_key(DID, b"<html>").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }
}
