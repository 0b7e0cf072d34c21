//! The AppView's own identity. A PDS routes a user's requests to an AppView
//! named by a DID (`atproto-proxy: <did>#bsky_appview`, or its configured
//! default) and signs a service-auth token whose `aud` is that DID. For a
//! `did:web` service DID the DID document is ours to publish, at
//! `https://<host>/.well-known/did.json`: it names our `#atproto` key and the
//! `#bsky_appview` and `#bsky_notif` services at our public URL.

use serde_json::{json, Value};
use skyhose_proto::crypto::PublicKey;

use crate::auth::SERVICE_IDS;

/// What the DID document says about this AppView.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    pub did: String,
    pub key: PublicKey,
    /// Where PDSes reach the XRPC API: `https://host[:port]`, no path.
    pub endpoint: String,
}

impl ServiceIdentity {
    /// The document, when the DID is a `did:web` (a `did:plc` service
    /// identity is published through the PLC directory instead).
    pub fn did_document(&self) -> Option<Value> {
        if !self.did.starts_with("did:web:") {
            return None;
        }
        let [appview, notif] = SERVICE_IDS;
        Some(json!({
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1",
            ],
            "id": self.did,
            "verificationMethod": [{
                "id": format!("{}#atproto", self.did),
                "type": "Multikey",
                "controller": self.did,
                "publicKeyMultibase": self.key.to_multikey(),
            }],
            "service": [
                {
                    "id": format!("#{appview}"),
                    "type": "BskyAppView",
                    "serviceEndpoint": self.endpoint,
                },
                {
                    "id": format!("#{notif}"),
                    "type": "BskyNotificationService",
                    "serviceEndpoint": self.endpoint,
                },
            ],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhose_proto::crypto::{Curve, SigningKey};

    #[test]
    fn a_did_web_document_names_the_key_and_both_services() {
        let key = SigningKey::from_bytes(Curve::K256, &[7; 32])
            .unwrap()
            .public_key();
        let identity = ServiceIdentity {
            did: "did:web:appview.example.com".into(),
            key: key.clone(),
            endpoint: "https://appview.example.com".into(),
        };
        let doc = identity.did_document().unwrap();
        assert_eq!(doc["id"], "did:web:appview.example.com");
        let method = &doc["verificationMethod"][0];
        assert_eq!(method["id"], "did:web:appview.example.com#atproto");
        assert_eq!(
            PublicKey::from_multikey(method["publicKeyMultibase"].as_str().unwrap()).unwrap(),
            key
        );
        assert_eq!(doc["service"][0]["id"], "#bsky_appview");
        assert_eq!(doc["service"][0]["type"], "BskyAppView");
        assert_eq!(doc["service"][1]["id"], "#bsky_notif");
        assert_eq!(
            doc["service"][1]["serviceEndpoint"],
            "https://appview.example.com"
        );
        let plc = ServiceIdentity {
            did: "did:plc:abc".into(),
            ..identity
        };
        assert!(plc.did_document().is_none());
    }
}
