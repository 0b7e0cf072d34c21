//! A DID's atproto signing key: where its document lives (`did:plc` through
//! the PLC directory, `did:web` at the host's `/.well-known/did.json`), and the
//! `#atproto` verification method in it.

use serde_json::Value;
pub use skyhose_proto::crypto::PublicKey;

use super::fetch::{FetchError, Fetcher};

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
    PublicKey::from_multikey(multibase)
        .map_err(|e| ResolveError::Document(format!("#atproto publicKeyMultibase: {e}")))
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
    use serde_json::json;

    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

    use skyhose_proto::crypto::{Curve, SigningKey};

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
        let k = SigningKey::from_bytes(Curve::K256, &[0x11; 32]).unwrap();
        let mb = k.public_key().to_multikey();
        for vm_id in ["#atproto".to_owned(), format!("{DID}#atproto")] {
            let key = signing_key(DID, &doc(DID, &vm_id, &mb)).unwrap();
            assert_eq!(key.curve(), Curve::K256);
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
