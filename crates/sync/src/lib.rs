//! skyhose-sync: the repo sync stage. It enumerates repos
//! (`com.atproto.sync.listHosts`, `listRepos`), fetches each
//! (`getRepo`) within per-host limits, verifies it (CAR, MST, record CIDs,
//! the commit's DID and signature) and hands it to the index as its state
//! at that rev, driven by a durable queue in PostgreSQL. It must not serve
//! HTTP, read the firehose, or write index rows itself: rows are written
//! by `skyhose_index::RepoLoader`, with the index's own rules.

mod batch;
mod fetch;
mod hosts;
mod http;
pub mod queue;
mod run;

use std::time::Duration;

pub use batch::BatchConfig;
pub use queue::{Queue, Status};
pub use run::{run, Backfill, BackfillSummary, Timings};
pub use skyhose_identity::{KeyError, KeySource};
pub use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("postgres {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error(transparent)]
    Index(#[from] skyhose_index::IndexError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("loading a batch of repos: {0}")]
    Load(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl SyncError {
    pub(crate) fn db(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        SyncError::Db {
            context: context.into(),
            source,
        }
    }
}

/// Everything a backfill needs.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    pub database_url: String,
    /// Relays or PDSes to enumerate (`listHosts`, then `listRepos`), and
    /// where repos named by `dids` are fetched from (the first one).
    pub sources: Vec<String>,
    /// Repos to (re)load from the first source, whatever their state.
    pub dids: Vec<String>,
    /// Enumerate the sources (off when only `dids` are wanted).
    pub enumerate: bool,
    /// Where accounts' signing keys come from (the DID documents).
    pub identity: skyhose_identity::IdentityConfig,
    /// Repos fetched, verified and loaded at once.
    pub concurrency: usize,
    /// Requests in flight to one host.
    pub per_host: usize,
    /// How verified repos are gathered into load transactions.
    pub batch: BatchConfig,
    pub request_timeout: Duration,
    /// Largest repo CAR accepted.
    pub max_repo_bytes: usize,
    /// Attempts before a transient failure is recorded as failed.
    pub max_attempts: i32,
    /// A `running` claim older than this is a dead process's.
    pub reclaim_after: Duration,
    pub log_every: Duration,
    /// Stop when the queue is drained and every source listed; otherwise
    /// wait for more (the live index enqueues accounts it meets).
    pub exit_when_drained: bool,
    /// Loads keep each repo's root and queue the accounts their records
    /// point at, as the live index does (on beside a live index).
    pub repo_sync: bool,
}

impl BackfillConfig {
    pub fn new(
        database_url: impl Into<String>,
        identity: skyhose_identity::IdentityConfig,
    ) -> Self {
        BackfillConfig {
            database_url: database_url.into(),
            sources: Vec::new(),
            dids: Vec::new(),
            enumerate: true,
            identity,
            concurrency: 8,
            per_host: 4,
            batch: BatchConfig::default(),
            request_timeout: Duration::from_secs(120),
            // The largest repos of the network are a few hundred MB.
            max_repo_bytes: 1 << 30,
            max_attempts: 5,
            reclaim_after: Duration::from_secs(600),
            log_every: Duration::from_secs(5),
            exit_when_drained: true,
            repo_sync: false,
        }
    }
}
