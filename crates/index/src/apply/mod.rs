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
//!    finally the actor rows that change, pipelined (`write`).
//!
//! No actor row is locked before step 4, so concurrent batches only meet on
//! the records they share. An author's row is not even written unless
//! something on it changes, so an account deletion and a concurrent batch
//! with an older commit of that account do not meet on a row. Instead:
//! - every batch transaction takes its transaction id before it reads the
//!   recorded deletions (step 1);
//! - a deletion commits its `deleted_seq` and sweep, and hands back the
//!   transactions that were running at that commit; once all of them have
//!   ended, as new snapshots see it, the deletion sweeps again
//!   ([`apply_batch`]'s `resweeps`, usually with the worker's next batch).
//!
//! A batch that read the deletions before that commit was running with its
//! id then, so the second sweep comes after it ended and finds its rows; a
//! batch that read them later sees the deletion and skips what it covers.
//! The deletion's entries are acknowledged only after the second sweep.

mod compact_rows;
mod keys;
mod known;
mod plan;
mod sync;
pub(crate) mod unnest;
mod write;

pub use known::{KnownActors, DEFAULT_KNOWN_ACTORS};
pub(crate) use write::LIVE_RECORDS_OF;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use deadpool_postgres::{Client, Transaction};
use tracing::debug;

use crate::compact::{Layout, Target};
use crate::db::RowExt;
use crate::entry::{Event, ACCOUNT_DELETED};
use crate::error::IndexError;
use crate::records::POST;
use plan::{Batch, Touched};

/// What one applied batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub events: u64,
    /// Records whose live state or content changed.
    pub records_changed: u64,
}

/// Transactions redone in a row because a concurrent batch created one of
/// their actor rows first, before the batch is handed back as a transient
/// failure.
const MAX_REDOS: u32 = 8;

/// How long a deletion waits for the transactions that were running when
/// it committed. Batch transactions last well under this; a transaction
/// that runs longer is not one of them.
pub const CONCURRENT_WAIT_LIMIT: Duration = Duration::from_secs(60);
const CONCURRENT_POLL: Duration = Duration::from_millis(2);

/// One applied batch: what it changed and, when it held account deletions,
/// the transactions (`xid8` as text) that must end before they sweep again.
#[derive(Debug, Default)]
pub struct Applied {
    pub stats: ApplyStats,
    pub running_at_deletion: Option<Vec<String>>,
}

/// Applies `events` and commits them; `known` is updated with the actors
/// whose rows this batch made visible. `resweeps` are account deletions
/// applied before whose waited-for transactions have all ended
/// ([`running_count`] is 0): they sweep again in the batch's transaction.
pub async fn apply_batch(
    client: &mut Client,
    events: &[&Event],
    resweeps: &[&Event],
    known: &KnownActors,
) -> Result<Applied, IndexError> {
    // Account deletions go in transactions of their own, so that redoing a
    // deletion never redoes a whole batch. Order does not matter (writes are
    // ordered by rev/seq and deleted_seq), and all commit before the
    // entries are acknowledged.
    let (deletions, mut ordinary): (Vec<&Event>, Vec<&Event>) =
        events.iter().partition(|event| is_account_deletion(event));
    let mut applied = Applied {
        stats: ApplyStats {
            events: events.len() as u64,
            records_changed: 0,
        },
        running_at_deletion: None,
    };
    if !deletions.is_empty() {
        applied.stats.records_changed += apply_transaction(client, &deletions, known).await?;
        applied.running_at_deletion = Some(running_transactions(client).await?);
    }
    ordinary.extend_from_slice(resweeps);
    if !ordinary.is_empty() {
        applied.stats.records_changed += apply_transaction(client, &ordinary, known).await?;
    }
    Ok(applied)
}

/// Whether `event` deletes an account: such events are applied in a
/// transaction of their own and sweep again later (see the module's doc).
pub fn is_account_deletion(event: &Event) -> bool {
    matches!(event, Event::Account { status, .. } if status == ACCOUNT_DELETED)
}

/// Ids of the transactions running now, as text (`xid8`). A snapshot lists
/// only the running ids below its `xmax`, which is one past the newest
/// *finished* transaction, so the ones from `xmax` up to a transaction id
/// taken now are running too.
async fn running_transactions(client: &mut Client) -> Result<Vec<String>, IndexError> {
    let tx = client
        .transaction()
        .await
        .map_err(IndexError::pg("starting the running transactions query"))?;
    let statement = tx
        .prepare_cached(
            "SELECT x::text AS xid FROM pg_snapshot_xip(pg_current_snapshot()) AS x \
             UNION ALL \
             SELECT n::text FROM generate_series( \
               pg_snapshot_xmax(pg_current_snapshot())::text::int8, \
               pg_current_xact_id()::text::int8 - 1) AS n",
        )
        .await
        .map_err(IndexError::pg("preparing the running transactions query"))?;
    let running = tx
        .query(&statement, &[])
        .await
        .map_err(IndexError::pg("listing running transactions"))?
        .iter()
        .map(|row| row.col("xid", "listing running transactions"))
        .collect::<Result<_, _>>()?;
    tx.commit()
        .await
        .map_err(IndexError::pg("ending the running transactions query"))?;
    Ok(running)
}

/// How many of `xids` are still running. Running means not yet finished
/// for a new snapshot, not what `pg_xact_status` says: a transaction is
/// marked committed there a moment before new snapshots see its rows, and
/// a sweep in that moment would miss them.
pub async fn running_count(client: &Client, xids: &[String]) -> Result<i64, IndexError> {
    if xids.is_empty() {
        return Ok(0);
    }
    let statement = client
        .prepare_cached(
            "SELECT count(*) AS running FROM unnest($1::text[]) AS x \
             WHERE NOT pg_visible_in_snapshot(x::xid8, pg_current_snapshot())",
        )
        .await
        .map_err(IndexError::pg("preparing the transaction status query"))?;
    client
        .query_one(&statement, &[&xids])
        .await
        .map_err(IndexError::pg("reading transaction status"))?
        .col("running", "reading transaction status")
}

/// Waits until none of `xids` is running, for at most `limit`; false when
/// some still were.
pub async fn wait_for_transactions(
    client: &Client,
    xids: &[String],
    limit: Duration,
) -> Result<bool, IndexError> {
    let started = Instant::now();
    loop {
        if running_count(client, xids).await? == 0 {
            return Ok(true);
        }
        if started.elapsed() > limit {
            return Ok(false);
        }
        tokio::time::sleep(CONCURRENT_POLL).await;
    }
}

async fn apply_transaction(
    client: &mut Client,
    events: &[&Event],
    known: &KnownActors,
) -> Result<u64, IndexError> {
    let batch = Batch::collect(events);
    if batch.actors.is_empty() {
        return Ok(0);
    }
    let marks = if known.repo_sync() {
        sync::Marks::collect(events, known)
    } else {
        sync::Marks::default()
    };
    // The ids of the batch's compact rows, committed before its
    // transaction starts (see `keys`).
    let mut keys = keys::Keys::default();
    let wanted = compact_keys_wanted(&batch);
    if !wanted.is_empty() {
        keys.resolve(&*client, &known.dictionary, &wanted).await?;
    }
    for _ in 0..MAX_REDOS {
        let tx = client
            .transaction()
            .await
            .map_err(IndexError::pg("starting a batch transaction"))?;
        match apply_in(&tx, &batch, &marks, known, &mut keys).await? {
            Some((changed, diverged)) => {
                tx.commit()
                    .await
                    .map_err(IndexError::pg("committing a batch"))?;
                marks.count(&diverged);
                // Every actor of the batch is an author: all their rows are
                // visible now.
                known.insert_all(batch.actors.keys().copied());
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

/// Runs the batch in `tx`: the records it changed and the repos found
/// diverged from their roots, or `None` when a concurrent batch created one
/// of its actor rows first and it must be rolled back and redone.
async fn apply_in<'a>(
    tx: &Transaction<'_>,
    batch: &Batch<'a>,
    marks: &sync::Marks<'_>,
    known: &KnownActors,
    keys: &mut keys::Keys,
) -> Result<Option<(u64, Vec<String>)>, IndexError> {
    let dids: Vec<&str> = batch.actors.keys().copied().collect();
    // Before the deletions are read: see the module's doc.
    write::take_transaction_id(tx).await?;
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
        const READING: &str = "finding records of deleted accounts";
        let identity = (
            row.col("did", READING)?,
            row.col("collection", READING)?,
            row.col("rkey", READING)?,
        );
        touched.entry(row.col("uri", READING)?).or_insert(identity);
    }
    // Swept records' rows exist, and so do their ids.
    let mut swept_keys = keys::Wanted::default();
    for (did, collection, rkey) in touched.values() {
        if is_compact(collection) || *collection == POST {
            swept_keys.record(did, rkey);
        }
    }
    if !swept.is_empty() && !swept_keys.is_empty() {
        keys.resolve(tx, &known.dictionary, &swept_keys).await?;
    }

    let (stored, inserted) = if touched.is_empty() {
        Default::default()
    } else {
        write::lock_records(tx, &touched, &candidates, keys).await?
    };
    let changes = plan::transitions(&touched, &candidates, &stored, &inserted, &deleted);
    // Counters are kept by their record's ids: those a new record counts
    // for were resolved before the transaction, those a dead one takes
    // back exist since it was counted.
    let mut counted = keys::Wanted::default();
    for uri in changes.post_deltas.keys() {
        counted.reference(Some(uri));
    }
    if !counted.is_empty() {
        keys.resolve(tx, &known.dictionary, &counted).await?;
    }
    let changed = changes.transitions;
    let unknown: BTreeSet<&'a str> = known.unknown(batch.actors.keys().copied());
    if !write::write_changes(tx, changes, &batch.actors, &unknown, keys).await? {
        metrics::counter!("skyhose_index_redos_total", "cause" => "actor_created_concurrently")
            .increment(1);
        return Ok(None);
    }
    let diverged = sync::write(tx, marks).await?;
    Ok(Some((changed, diverged)))
}

/// The compact layout of `collection`'s table, when it has one.
fn compact_layout(collection: &str) -> Option<&'static Layout> {
    crate::kinds::kind_table(collection)
        .and_then(|kind| kind.own_state.as_ref())
        .and_then(|state| state.compact.as_ref())
        .map(|compact| compact.layout)
}

/// Whether `collection`'s records are kept in a compact table.
fn is_compact(collection: &str) -> bool {
    compact_layout(collection).is_some()
}

/// Every id the batch's compact records may need (their own keys and the
/// records and accounts they reference), and the ids of the records its
/// posts count for.
fn compact_keys_wanted<'a>(batch: &Batch<'a>) -> keys::Wanted<'a> {
    let mut wanted = keys::Wanted::default();
    for commit in &batch.commits {
        for op in &commit.ops {
            // A post row keeps its ids too, and the records a post counts
            // for (`post_counts`) are its parent and the record it quotes.
            if op.collection == POST {
                wanted.record(&commit.repo, &op.rkey);
                if let Some(write) = &op.write {
                    wanted.reference(write.facts.subject.as_deref());
                    wanted.reference(write.facts.quote_subject.as_deref());
                }
            }
            let Some(layout) = compact_layout(&op.collection) else {
                continue;
            };
            wanted.record(&commit.repo, &op.rkey);
            let Some(write) = &op.write else {
                continue;
            };
            let column = |index: usize| write.columns.get(index).and_then(Option::as_deref);
            for reference in layout.refs {
                match reference.target {
                    Target::Record { uri, .. } => wanted.reference(column(uri)),
                    Target::Account { did } => wanted.account(column(did)),
                }
            }
        }
    }
    wanted
}
