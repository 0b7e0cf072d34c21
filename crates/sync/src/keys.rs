//! The account key a repo's commit must be signed with. One function reads
//! it from the DID document (`#atproto` Multikey); [`KeySource`] lets a
//! caller put a caching, SSRF-guarded resolver in its place.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use skyhose_proto::crypto::PublicKey;

use crate::hosts::Hosts;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The DID has no document (or none that names a key): the repo cannot
    /// be verified, now or on a retry.
    #[error("DID {did}: {problem}")]
    Unresolvable { did: String, problem: String },
    /// The directory did not answer properly; worth trying again.
    #[error("DID {did}: resolving failed: {problem}")]
    Transient { did: String, problem: String },
}

pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = Result<PublicKey, KeyError>> + Send + 'a>>;

/// Where account keys come from.
pub trait KeySource: Send + Sync {
    fn key<'a>(&'a self, did: &'a str) -> KeyFuture<'a>;
}

/// `did:plc` documents from `<plc_url>/<did>`, `did:web` from
/// `https://<host>/.well-known/did.json`.
pub struct DidDocumentKeys {
    pub plc_url: String,
    pub hosts: std::sync::Arc<Hosts>,
}

impl KeySource for DidDocumentKeys {
    fn key<'a>(&'a self, did: &'a str) -> KeyFuture<'a> {
        Box::pin(async move {
            let (base, path) = if did.starts_with("did:plc:") {
                (self.plc_url.clone(), format!("/{did}"))
            } else if let Some(host) = did.strip_prefix("did:web:") {
                (
                    format!("https://{host}"),
                    "/.well-known/did.json".to_owned(),
                )
            } else {
                return Err(KeyError::Unresolvable {
                    did: did.to_owned(),
                    problem: "not a did:plc or did:web".into(),
                });
            };
            let transient = |problem: String| KeyError::Transient {
                did: did.to_owned(),
                problem,
            };
            let response = self
                .hosts
                .get(&base, &path)
                .await
                .map_err(|e| transient(e.to_string()))?;
            match response.status {
                200 => {}
                404 | 410 => {
                    return Err(KeyError::Unresolvable {
                        did: did.to_owned(),
                        problem: format!("no DID document (HTTP {})", response.status),
                    })
                }
                status => return Err(transient(format!("HTTP {status}"))),
            }
            atproto_key(did, &response.body)
        })
    }
}

/// The `#atproto` key of a DID document.
pub fn atproto_key(did: &str, document: &[u8]) -> Result<PublicKey, KeyError> {
    let bad = |problem: String| KeyError::Unresolvable {
        did: did.to_owned(),
        problem,
    };
    let doc: Value = serde_json::from_slice(document)
        .map_err(|e| bad(format!("DID document is not JSON: {e}")))?;
    if doc.get("id").and_then(Value::as_str) != Some(did) {
        return Err(bad("DID document is for another DID".into()));
    }
    let method = doc
        .get("verificationMethod")
        .and_then(Value::as_array)
        .and_then(|methods| {
            methods.iter().find(|m| {
                m.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id == "#atproto" || id == format!("{did}#atproto"))
            })
        })
        .ok_or_else(|| bad("DID document has no #atproto key".into()))?;
    let multibase = method
        .get("publicKeyMultibase")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("#atproto key has no publicKeyMultibase".into()))?;
    PublicKey::from_multikey(multibase).map_err(|e| bad(format!("#atproto key: {e}")))
}
