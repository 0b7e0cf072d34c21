//! skyhose-ingest: the relay client. It turns subscribeRepos frames into Redis Stream
//! entries with batched XADD, keeps the cursor, applies backpressure and reconnects.
//! It never touches PostgreSQL: a resume point from the index is passed in.

pub mod entry;
mod json;

pub use entry::{event_to_entry, Compat, ConvertError, EntryKind, StreamEntry};
