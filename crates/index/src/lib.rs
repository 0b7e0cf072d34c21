//! skyhose-index: the consumer-group workers that turn stream entries into
//! PostgreSQL rows, plus the schema and its migrations (all of them, the
//! API's private-state tables included). It does not serve HTTP, and it
//! never writes the private-state tables (`private_*`), which skyhose-api
//! owns and writes.

mod apply;
mod compact;
mod db;
pub mod entry;
mod error;
pub mod identity;
mod kinds;
mod load;
mod migrate;
pub mod records;
mod shards;
mod snapshot;
mod stream;
mod worker;

use std::time::Duration;

pub use apply::ApplyStats;
pub use db::{connect_pool, drop_database, ensure_database, RowExt};
pub use error::IndexError;
pub use load::{RepoLoaded, RepoLoader, RepoRecord, RepoState, BACKFILL_SEQ};
pub use migrate::{migrate, MigrationReport};
pub use snapshot::{resume_seq, snapshot, ActorSnapshot, PostSnapshot, Snapshot};
pub use worker::{run, IndexSummary};

/// The two readers of an `XREADGROUP` reply, for the A/B benchmark
/// (`benches/resp.rs`); not an interface for other crates.
#[doc(hidden)]
pub use stream::{entries_of_reply, entries_of_reply_with_redis};

pub use deadpool_postgres::Pool;
pub use tokio_util::sync::CancellationToken;

pub const DEFAULT_STREAM_KEY: &str = "firehose:events";
pub const DEFAULT_DEAD_LETTER_KEY: &str = "firehose:dead-letters";
pub const DEFAULT_GROUP: &str = "firehose-processors";
/// Entries per read and per transaction. Every batch pays a fixed cost
/// (about 25 statements, their round trips and a commit), and a busy actor
/// or post has its row written once per batch, so larger batches cost less
/// per event, until two concurrent ones hold each other's counter rows too
/// long. On 2 cores, with each repo's events applied by one worker
/// (`shards`), 2,000 indexed 9–16% faster than 1,000; 3,000 was 2–6% faster
/// again but took 15% more memory, and 4,000 was slower.
pub const DEFAULT_BATCH_SIZE: usize = 2000;

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub redis_url: String,
    pub database_url: String,
    pub stream_key: String,
    pub dead_letter_key: String,
    pub group: String,
    /// Consumer name; worker `i` reads as `<consumer>-<i>`.
    pub consumer: String,
    pub workers: usize,
    pub batch_size: usize,
    /// Pending entries idle longer than this are taken over from their consumer.
    pub claim_idle: Duration,
    /// An entry delivered more often than this is dead-lettered.
    pub max_deliveries: u64,
    /// How long one XREADGROUP waits for new entries.
    pub block: Duration,
    /// Stop once every entry of the stream is acknowledged (benchmarks, tests).
    pub exit_when_drained: bool,
    /// How often progress is logged.
    pub log_every: Duration,
    /// Compress the WAL of the workers' sessions when the server lets this
    /// user set `wal_compression` (a superuser); otherwise a no-op.
    pub compress_wal: bool,
    /// Resolve accounts' identities (first sight, every `#identity`) with
    /// this resolver configuration; `None` keeps the `#identity` hints.
    pub identity: Option<skyhose_identity::IdentityConfig>,
    /// A backfill runs beside the index: batches keep each repo's root and
    /// queue the repos it must load (accounts seen for the first time,
    /// repos that diverged), see `apply::sync`.
    pub repo_sync: bool,
}

impl IndexConfig {
    pub fn new(redis_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        IndexConfig {
            redis_url: redis_url.into(),
            database_url: database_url.into(),
            stream_key: DEFAULT_STREAM_KEY.into(),
            dead_letter_key: DEFAULT_DEAD_LETTER_KEY.into(),
            group: DEFAULT_GROUP.into(),
            consumer: format!("indexer-{}", std::process::id()),
            workers: 2,
            batch_size: DEFAULT_BATCH_SIZE,
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            block: Duration::from_millis(1000),
            exit_when_drained: false,
            log_every: Duration::from_secs(5),
            compress_wal: true,
            identity: None,
            repo_sync: false,
        }
    }
}
