//! skyhose-ingest: the relay client. It turns subscribeRepos frames into Redis Stream
//! entries with batched XADD, keeps the cursor, applies backpressure and reconnects;
//! when given a key source, it checks each commit against its account's key and
//! writes a resync request instead of a commit that fails.
//! It never touches PostgreSQL: a resume point from the index is passed in; and it
//! never fetches repos itself: resyncs are the index's and backfill's.

pub mod backoff;
pub mod config;
pub mod entry;
mod observe;
mod run;
mod sink;
pub mod verify;

pub use config::{IngestConfig, RelayClock};
pub use entry::{
    event_to_entry, event_to_entry_with, resync_entry, Compat, ConvertError, ConvertOptions,
    EntryKind, StreamEntry,
};
pub use run::{run, IngestError, IngestSummary};
pub use tokio_util::sync::CancellationToken;
pub use verify::VerifyConfig;
