//! The account key a repo's commits must be signed with, and the host that
//! serves the repo: the `#atproto` key and `#atproto_pds` service of its DID
//! document, from the resolver. Backfill and the firehose's commit checks
//! both take keys through [`KeySource`], which lets tests put fixed keys in
//! its place.

use std::future::Future;
use std::pin::Pin;

use skyhose_proto::crypto::PublicKey;

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
pub type PdsFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// A key fetched less than this long ago is not fetched again when a
/// signature fails with it: a rotation is picked up within this delay.
pub const KEY_REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Where account keys come from.
pub trait KeySource: Send + Sync {
    fn key<'a>(&'a self, did: &'a str) -> KeyFuture<'a>;

    /// The base URL of the account's PDS, when its DID document names one.
    fn pds<'a>(&'a self, _did: &'a str) -> PdsFuture<'a> {
        Box::pin(async { None })
    }

    /// Drops what is remembered of `did`, so its next key is fetched again
    /// (a signature that fails may mean the account rotated its key), and
    /// says whether it did. A source may keep a key it fetched moments ago,
    /// so that forged signatures cannot drive fetches; a source that
    /// remembers nothing has nothing to drop.
    fn forget(&self, _did: &str) -> bool {
        false
    }
}

/// Keys from the DID documents, through the one identity resolver (its
/// cache, its single fetch per DID, and its guard against private hosts).
impl KeySource for crate::Resolver {
    fn key<'a>(&'a self, did: &'a str) -> KeyFuture<'a> {
        Box::pin(async move {
            let resolved = self.resolve_did(did).await.map_err(|e| {
                if e.is_transient() {
                    KeyError::Transient {
                        did: did.to_owned(),
                        problem: e.to_string(),
                    }
                } else {
                    KeyError::Unresolvable {
                        did: did.to_owned(),
                        problem: e.to_string(),
                    }
                }
            })?;
            resolved
                .document
                .signing_key
                .clone()
                .ok_or_else(|| KeyError::Unresolvable {
                    did: did.to_owned(),
                    problem: "DID document has no #atproto key".into(),
                })
        })
    }

    fn pds<'a>(&'a self, did: &'a str) -> PdsFuture<'a> {
        Box::pin(async move {
            let resolved = self.resolve_did(did).await.ok()?;
            resolved.document.pds.clone()
        })
    }

    fn forget(&self, did: &str) -> bool {
        self.refresh_if_older(did, KEY_REFRESH_AFTER)
    }
}
