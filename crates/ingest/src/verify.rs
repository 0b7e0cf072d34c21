//! Each `#commit` checked against its account's key before it reaches the
//! stream (sync 1.1): the signature, and its ops undone on the CAR's partial
//! tree against `prevData`. A commit that fails is not written; the loop puts
//! a `sync` entry in its place, so the index fetches the repo again from its
//! host instead of indexing a change nobody signed.
//!
//! Key lookups are network I/O and signature checks are CPU, so each commit
//! is checked in its own task while the loop keeps reading; the loop takes
//! the results back in relay order (see `run`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use skyhose_identity::{KeyError, KeySource, TtlCache};
use skyhose_proto::crypto::PublicKey;
use skyhose_proto::frame::Commit;
use skyhose_proto::repo::{verify_commit_event, RepoError};

use crate::backoff::Backoff;
use crate::observe;

/// The reason of a commit whose account key could not be had within
/// [`VerifyConfig::key_retry_for`].
pub const KEY_UNAVAILABLE: &str = "key_unavailable";
/// The reason of a commit whose DID has no document or no `#atproto` key.
pub const DID_UNRESOLVABLE: &str = "did_unresolvable";

/// Settings of the commit checks; `IngestConfig::verify` turns them on.
#[derive(Clone)]
pub struct VerifyConfig {
    /// Where account keys come from (the identity resolver, with its cache).
    pub keys: Arc<dyn KeySource>,
    /// Frames read ahead of the oldest one still being checked; the relay
    /// is not read further until it is done.
    pub max_in_flight: usize,
    /// How long a DID's key is retried after transient failures before its
    /// commits become resync requests (`key_unavailable`).
    pub key_retry_for: Duration,
    /// First delay between key retries (doubling, with jitter).
    pub key_retry_base: Duration,
}

impl VerifyConfig {
    pub fn new(keys: Arc<dyn KeySource>) -> Self {
        VerifyConfig {
            keys,
            max_in_flight: 512,
            key_retry_for: Duration::from_secs(30),
            key_retry_base: Duration::from_millis(250),
        }
    }
}

impl std::fmt::Debug for VerifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyConfig")
            .field("max_in_flight", &self.max_in_flight)
            .field("key_retry_for", &self.key_retry_for)
            .finish_non_exhaustive()
    }
}

/// What the check of one commit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    Rejected {
        reason: &'static str,
        detail: String,
    },
}

/// The commit checks, shared by the tasks that run them.
pub struct Verifier {
    cfg: VerifyConfig,
    /// DIDs whose key could not be had for a whole retry period: their next
    /// commits are turned into resync requests at once for a while, so one
    /// account with an unreachable document holds the relay back once, not
    /// once per commit.
    unavailable: TtlCache<()>,
}

impl Verifier {
    pub fn new(cfg: VerifyConfig) -> Self {
        Verifier {
            cfg,
            unavailable: TtlCache::new(10_000),
        }
    }

    pub fn max_in_flight(&self) -> usize {
        self.cfg.max_in_flight.max(1)
    }

    /// Checks `commit`; a signature that fails with the remembered key is
    /// checked once more with a freshly fetched one (the account may have
    /// rotated its key).
    pub async fn check(&self, commit: &Commit) -> Verdict {
        let key = match self.key(&commit.repo).await {
            Ok(key) => key,
            Err(rejected) => return rejected,
        };
        match verify(commit, &key) {
            Err(RepoError::BadSignature) => {}
            other => return verdict(other),
        }
        if !self.cfg.keys.forget(&commit.repo) {
            // The key was fetched moments ago: asking again would return it.
            return verdict(Err(RepoError::BadSignature));
        }
        metrics::counter!(observe::KEY_REFETCHES).increment(1);
        match self.key(&commit.repo).await {
            Ok(fresh) if fresh == key => verdict(Err(RepoError::BadSignature)),
            Ok(fresh) => verdict(verify(commit, &fresh)),
            Err(rejected) => rejected,
        }
    }

    /// The account key, retried with backoff while resolution fails
    /// transiently, for at most `key_retry_for`.
    async fn key(&self, did: &str) -> Result<PublicKey, Verdict> {
        if self.unavailable.get(did).is_some() {
            return Err(Verdict::Rejected {
                reason: KEY_UNAVAILABLE,
                detail: "the account's key was unavailable moments ago".into(),
            });
        }
        let started = Instant::now();
        let mut backoff = Backoff::new(self.cfg.key_retry_base, self.cfg.key_retry_for / 4);
        loop {
            let asked = Instant::now();
            let result = self.cfg.keys.key(did).await;
            metrics::histogram!(observe::KEY_SECONDS).record(asked.elapsed().as_secs_f64());
            let error = match result {
                Ok(key) => {
                    metrics::counter!(observe::KEY_LOOKUPS, "result" => "ok").increment(1);
                    return Ok(key);
                }
                Err(error @ KeyError::Unresolvable { .. }) => {
                    metrics::counter!(observe::KEY_LOOKUPS, "result" => "unresolvable")
                        .increment(1);
                    return Err(Verdict::Rejected {
                        reason: DID_UNRESOLVABLE,
                        detail: error.to_string(),
                    });
                }
                Err(error @ KeyError::Transient { .. }) => error,
            };
            metrics::counter!(observe::KEY_LOOKUPS, "result" => "transient").increment(1);
            let delay = backoff.next_delay().max(Duration::from_millis(10));
            if started.elapsed() + delay >= self.cfg.key_retry_for {
                self.unavailable
                    .insert(did.to_owned(), (), self.cfg.key_retry_for);
                return Err(Verdict::Rejected {
                    reason: KEY_UNAVAILABLE,
                    detail: error.to_string(),
                });
            }
            tracing::debug!(did, error = %error, delay_ms = delay.as_millis() as u64, "account key unavailable; retrying");
            tokio::time::sleep(delay).await;
            // The resolver remembers failures too; the retry must ask again.
            self.cfg.keys.forget(did);
        }
    }
}

fn verify(commit: &Commit, key: &PublicKey) -> Result<(), RepoError> {
    verify_commit_event(commit, key).map(|_| ())
}

fn verdict(result: Result<(), RepoError>) -> Verdict {
    match result {
        Ok(()) => Verdict::Verified,
        Err(error) => Verdict::Rejected {
            reason: error.reason(),
            detail: error.to_string(),
        },
    }
}
