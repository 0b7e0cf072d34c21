//! Acknowledging a batch only once PostgreSQL has made it durable.
//!
//! The workers' sessions commit without waiting for the WAL flush
//! (`synchronous_commit = off`): waiting left a core idle at every commit
//! and made the backend do the flush itself. An entry must never be
//! acknowledged before its rows would survive a crash of PostgreSQL,
//! though, so a committed batch waits here with the WAL position its commit
//! ended at, and is acknowledged once the server reports that position
//! flushed. The WAL writer flushes every few hundred milliseconds on its
//! own; a worker that runs out of work forces a flush instead of waiting.
//!
//! If PostgreSQL crashes first, the batch's entries are still pending in the
//! group and are applied again, which leaves the same database (every write
//! is idempotent).

use std::collections::VecDeque;

use deadpool_postgres::Pool;
use tokio_postgres::types::PgLsn;

use crate::entry::RawEntry;
use crate::error::IndexError;

/// What a committed batch leaves to do in Redis.
pub(crate) struct Done {
    /// Every entry the batch is done with: applied and dead-lettered.
    pub ids: Vec<String>,
    pub dead: Vec<(RawEntry, String)>,
    pub applied: u64,
}

/// Committed batches waiting for their WAL to be flushed, oldest first.
/// One worker commits one batch at a time, so their positions only grow.
#[derive(Default)]
pub(crate) struct AwaitingFlush {
    batches: VecDeque<(u64, Done)>,
    /// The highest flush position PostgreSQL reported.
    flushed: u64,
}

/// A batch whose commit position is unknown (PostgreSQL did not answer
/// after the commit): only a forced flush makes it due.
const UNKNOWN_POSITION: u64 = u64::MAX;

/// Batches waiting beyond this force a flush, which bounds what a worker
/// holds in memory and how long acknowledgements lag when the WAL writer
/// is slow.
pub(crate) const MAX_AWAITING: usize = 4;

impl AwaitingFlush {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Queues a batch just committed, with the WAL positions read after its
    /// commit (`None` when they could not be read).
    pub fn push(&mut self, done: Done, positions: Option<WalPositions>) {
        let at = match positions {
            Some(WalPositions { inserted, flushed }) => {
                self.flushed = self.flushed.max(flushed);
                inserted
            }
            None => UNKNOWN_POSITION,
        };
        self.batches.push_back((at, done));
    }

    /// Queues a batch whose commit waited for the flush.
    pub fn push_durable(&mut self, done: Done) {
        self.batches.push_back((0, done));
    }

    /// Records a flush forced after every queued batch committed: all of
    /// them are durable now.
    pub fn all_flushed(&mut self) {
        for (at, _) in &mut self.batches {
            *at = 0;
        }
    }

    /// The oldest batch, when it is durable.
    pub fn first_due(&self) -> Option<&Done> {
        self.batches
            .front()
            .filter(|(at, _)| *at <= self.flushed)
            .map(|(_, done)| done)
    }

    /// Drops the oldest batch once it has been acknowledged.
    pub fn pop_first(&mut self) {
        self.batches.pop_front();
    }

    /// Forgets every batch (their stream is gone).
    pub fn clear(&mut self) {
        self.batches.clear();
    }
}

/// Where the server's WAL stands: how far it is written by anyone, and how
/// far it is flushed to disk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalPositions {
    pub inserted: u64,
    pub flushed: u64,
}

/// The server's WAL positions now. Read after a commit returned, the insert
/// position is at or past the end of that commit's record.
pub(crate) async fn wal_positions(pool: &Pool) -> Result<WalPositions, IndexError> {
    let client = pool
        .get()
        .await
        .map_err(IndexError::pool("reading the WAL position"))?;
    let statement = client
        .prepare_cached("SELECT pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn()")
        .await
        .map_err(IndexError::pg("preparing the WAL position query"))?;
    let row = client
        .query_one(&statement, &[])
        .await
        .map_err(IndexError::pg("reading the WAL position"))?;
    Ok(WalPositions {
        inserted: u64::from(row.get::<_, PgLsn>(0)),
        flushed: u64::from(row.get::<_, PgLsn>(1)),
    })
}

/// Flushes the WAL up to now: a transaction that commits synchronously
/// flushes everything written before its own commit record. It must write
/// WAL of its own, or its commit neither waits nor flushes; a transactional
/// logical decoding message is the smallest such write that touches no
/// table, and needs no privilege.
pub(crate) async fn force_flush(pool: &Pool) -> Result<(), IndexError> {
    let client = pool
        .get()
        .await
        .map_err(IndexError::pool("flushing the WAL"))?;
    client
        .batch_execute(
            "BEGIN; SET LOCAL synchronous_commit = on; \
             SELECT pg_logical_emit_message(true, 'skyhose', 'flush'); COMMIT",
        )
        .await
        .map_err(IndexError::pg("flushing the WAL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: &str) -> Done {
        Done {
            ids: vec![id.to_owned()],
            dead: Vec::new(),
            applied: 1,
        }
    }

    fn at(inserted: u64, flushed: u64) -> Option<WalPositions> {
        Some(WalPositions { inserted, flushed })
    }

    fn first_id(queue: &AwaitingFlush) -> Option<&str> {
        queue.first_due().map(|d| d.ids[0].as_str())
    }

    /// What the queue relies on, against a real server: a commit that did
    /// not wait can end past the flush position, and a forced flush moves
    /// the flush position past it.
    #[tokio::test]
    async fn a_forced_flush_covers_every_earlier_commit() {
        let url = format!(
            "postgres://postgres@127.0.0.1:5432/skyhose_test_durable_{}",
            std::process::id()
        );
        crate::db::ensure_database(&url).await.expect("database");
        let pool = crate::db::connect_worker_pool(&url, 2, false, false).expect("pool");
        let client = pool.get().await.expect("connection");
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS t (n int); \
                 INSERT INTO t SELECT generate_series(1, 1000)",
            )
            .await
            .expect("an asynchronous commit");
        drop(client);
        let after_commit = wal_positions(&pool).await.expect("positions");
        force_flush(&pool).await.expect("forced flush");
        let after_flush = wal_positions(&pool).await.expect("positions");
        assert!(
            after_flush.flushed >= after_commit.inserted,
            "{after_flush:?} does not cover {after_commit:?}"
        );
        drop(pool);
        crate::db::drop_database(&url).await.expect("drop database");
    }

    #[test]
    fn a_batch_is_due_once_its_commit_is_flushed() {
        let mut queue = AwaitingFlush::default();
        queue.push(done("a"), at(100, 50));
        assert_eq!(first_id(&queue), None);
        queue.push(done("b"), at(200, 100));
        assert_eq!(first_id(&queue), Some("a"));
        queue.pop_first();
        assert_eq!(first_id(&queue), None, "b ends at 200, flushed is 100");
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_forced_flush_makes_everything_due_even_unknown_positions() {
        let mut queue = AwaitingFlush::default();
        queue.push(done("a"), None);
        queue.push(done("b"), at(300, 0));
        assert_eq!(first_id(&queue), None);
        queue.all_flushed();
        assert_eq!(first_id(&queue), Some("a"));
        queue.pop_first();
        assert_eq!(first_id(&queue), Some("b"));
        queue.pop_first();
        assert!(queue.is_empty());
        // The forced flush covered only what was queued before it.
        queue.push(done("c"), at(400, 350));
        assert_eq!(first_id(&queue), None);
    }
}
