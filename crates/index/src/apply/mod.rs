//! Applying a batch of parsed events in one PostgreSQL transaction.
//!
//! Order of work, the same in every worker, each step in sorted key order
//! (lock waits stay short, deadlocks are rare and retried):
//! 1. read the account deletions already recorded for the batch's actors;
//! 2. record rows (the kind row of a post, like, repost or follow, a
//!    `records` row otherwise): insert every new uri with its final state
//!    and lock the existing rows, then read them;
//! 3. decide every record's transition in Rust (`plan`);
//! 4. write records, projection tables, count deltas, notifications and
//!    finally the actor rows, pipelined (`write`).
//!
//! No actor row is locked before step 4, so concurrent batches only meet on
//! the records they share. An account deletion and a concurrent batch with
//! an older commit of that account meet on the actor row instead: whichever
//! writes it second sees the other's change and redoes its transaction (the
//! batch because it applied a commit the deletion covers, the deletion
//! because a record it should kill was committed after its sweep).

mod plan;
mod write;

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::{Client, Transaction};
use tracing::debug;

use crate::entry::{Event, ACCOUNT_DELETED};
use crate::error::IndexError;
use plan::{Batch, Touched};

/// What one applied batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub events: u64,
    /// Records whose live state or content changed.
    pub records_changed: u64,
}

/// Transactions redone in a row because of concurrent batches (account
/// deletions, actor rows created first) before the batch is handed back as
/// a transient failure.
const MAX_REDOS: u32 = 8;

/// Applies `events` and commits them.
pub async fn apply_batch(client: &mut Client, events: &[&Event]) -> Result<ApplyStats, IndexError> {
    // Account deletions go in a transaction of their own, so that redoing a
    // deletion never redoes a whole batch. Order does not matter (writes are
    // ordered by rev/seq and deleted_seq), and both commit before the
    // entries are acknowledged.
    let (deletions, ordinary): (Vec<&Event>, Vec<&Event>) = events.iter().partition(
        |event| matches!(event, Event::Account { status, .. } if status == ACCOUNT_DELETED),
    );
    let mut stats = ApplyStats {
        events: events.len() as u64,
        records_changed: 0,
    };
    for part in [deletions, ordinary] {
        if !part.is_empty() {
            stats.records_changed += apply_transaction(client, &part).await?;
        }
    }
    Ok(stats)
}

async fn apply_transaction(client: &mut Client, events: &[&Event]) -> Result<u64, IndexError> {
    let batch = Batch::collect(events);
    if batch.actors.is_empty() {
        return Ok(0);
    }
    for _ in 0..MAX_REDOS {
        let tx = client
            .transaction()
            .await
            .map_err(IndexError::pg("starting a batch transaction"))?;
        match apply_in(&tx, &batch).await? {
            Some(changed) => {
                tx.commit()
                    .await
                    .map_err(IndexError::pg("committing a batch"))?;
                return Ok(changed);
            }
            None => {
                tx.rollback()
                    .await
                    .map_err(IndexError::pg("rolling back a batch"))?;
                debug!("batch crossed a concurrent batch; redoing it");
            }
        }
    }
    Err(IndexError::Contended(format!(
        "a batch crossed concurrent batches {MAX_REDOS} times in a row"
    )))
}

/// Runs the batch in `tx`; `None` when it crossed a concurrent account
/// deletion, or a concurrent batch created one of its actor rows first, and
/// it must be rolled back and redone.
async fn apply_in(tx: &Transaction<'_>, batch: &Batch<'_>) -> Result<Option<u64>, IndexError> {
    let dids: Vec<&str> = batch.actors.keys().copied().collect();
    let recorded = write::deleted_seqs(tx, &dids).await?;
    let deleting = batch.deleting();
    let mut deleted: HashMap<&str, i64> = HashMap::new();
    for (did, seq) in recorded
        .iter()
        .map(|(did, seq)| (did.as_str(), *seq))
        .chain(deleting.iter().copied())
    {
        let entry = deleted.entry(did).or_insert(seq);
        *entry = (*entry).max(seq);
    }

    let candidates = batch.candidates(&deleted);
    let mut touched: Touched<'_> = candidates
        .iter()
        .map(|(uri, c)| (*uri, (c.did, c.collection, c.rkey)))
        .collect();
    let swept = if deleting.is_empty() {
        Vec::new()
    } else {
        let dids: Vec<&str> = deleting.iter().map(|(did, _)| *did).collect();
        write::live_records_of(tx, &dids).await?
    };
    for row in &swept {
        touched
            .entry(row.get(0))
            .or_insert((row.get(1), row.get(2), row.get(3)));
    }

    let (stored, inserted) = if touched.is_empty() {
        Default::default()
    } else {
        write::lock_records(tx, &touched, &candidates).await?
    };
    let changes = plan::transitions(&touched, &candidates, &stored, &inserted, &deleted);
    let changed = changes.transitions;
    let Some(now_deleted) = write::write_changes(tx, changes, &batch.actors).await? else {
        metrics::counter!("skyhose_index_redos_total", "cause" => "actor_created_concurrently")
            .increment(1);
        return Ok(None);
    };

    if batch.missed_deletion(&deleted, &now_deleted) {
        metrics::counter!("skyhose_index_redos_total", "cause" => "account_deleted_concurrently")
            .increment(1);
        return Ok(None);
    }
    if !deleting.is_empty() {
        let final_seqs: BTreeMap<&str, i64> = now_deleted
            .iter()
            .map(|(did, seq)| (did.as_str(), *seq))
            .collect();
        let deleting: Vec<(&str, i64)> = deleting
            .iter()
            .map(|(did, seq)| (*did, final_seqs.get(did).copied().unwrap_or(*seq)))
            .collect();
        if write::deleted_records_remain(tx, &deleting).await? {
            metrics::counter!("skyhose_index_redos_total", "cause" => "record_committed_after_sweep")
                .increment(1);
            return Ok(None);
        }
    }
    Ok(Some(changed))
}
