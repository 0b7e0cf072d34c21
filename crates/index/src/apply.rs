//! Applying a batch of parsed events in one PostgreSQL transaction.
//!
//! Order of work (the same in every worker, each step in sorted key order,
//! which keeps lock waits short and deadlocks rare; they are retried):
//! 1. actors: insert missing rows, lock them (`FOR UPDATE` for accounts
//!    deleted in this batch, `FOR KEY SHARE` otherwise, so a deletion and a
//!    late create of the same repo serialize);
//! 2. records: insert placeholders for every touched uri, lock and read the
//!    current state;
//! 3. decide every record's transition in Rust (last writer by rev wins,
//!    tombstones stay, a deleted account's records die);
//! 4. write records, per-kind tables, count deltas and notifications with
//!    set-based statements.

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::types::ToSql;

use crate::entry::{Commit, Event, Write, ACCOUNT_DELETED};
use crate::error::IndexError;
use crate::kinds::kind_table;
use crate::records::{FOLLOW, LIKE, POST, REPOST};

/// How a write is ordered against the stored state: by repo rev when both
/// sides have one (TIDs sort as strings), else by seq. `op_index` orders
/// two ops on one record inside the same commit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OrderKey<'a> {
    rev: Option<&'a str>,
    seq: i64,
    op_index: usize,
}

fn is_newer(candidate: &OrderKey<'_>, stored_rev: Option<&str>, stored_seq: i64) -> bool {
    match (candidate.rev, stored_rev) {
        (Some(new), Some(old)) if new != old => new > old,
        (Some(_), Some(_)) => candidate.seq > stored_seq,
        _ => candidate.seq > stored_seq,
    }
}

fn key_cmp(a: &OrderKey<'_>, b: &OrderKey<'_>) -> std::cmp::Ordering {
    let by_rev = match (a.rev, b.rev) {
        (Some(x), Some(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    };
    by_rev
        .then(a.seq.cmp(&b.seq))
        .then(a.op_index.cmp(&b.op_index))
}

/// The winning op of this batch for one record.
struct Candidate<'a> {
    key: OrderKey<'a>,
    did: &'a str,
    collection: &'a str,
    rkey: &'a str,
    write: Option<&'a Write>,
}

struct Stored {
    did: String,
    collection: String,
    live: bool,
    rev: Option<String>,
    seq: Option<i64>,
    subject: Option<String>,
    quote_subject: Option<String>,
}

impl Stored {
    fn absent(did: &str, collection: &str) -> Self {
        Stored {
            did: did.to_owned(),
            collection: collection.to_owned(),
            live: false,
            rev: None,
            seq: None,
            subject: None,
            quote_subject: None,
        }
    }
}

/// Locks every touched record in uri order. Records this batch creates are
/// inserted with their final state by the same statement (returned in the
/// set); the current state of the others is read under the lock.
async fn lock_records(
    tx: &Transaction<'_>,
    touched: &[(&str, (&str, &str, &str))],
    candidates: &BTreeMap<&str, Candidate<'_>>,
) -> Result<(HashMap<String, Stored>, HashSet<String>), IndexError> {
    let n = touched.len();
    let mut uris = Vec::with_capacity(n);
    let mut dids = Vec::with_capacity(n);
    let mut collections = Vec::with_capacity(n);
    let mut rkeys = Vec::with_capacity(n);
    let mut cids: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut revs: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut seqs: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut lives: Vec<bool> = Vec::with_capacity(n);
    let mut subjects: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut quotes: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut records: Vec<Option<&str>> = Vec::with_capacity(n);
    for (uri, (did, collection, rkey)) in touched {
        let candidate = candidates.get(uri);
        let write = candidate.and_then(|c| c.write);
        uris.push(*uri);
        dids.push(*did);
        collections.push(*collection);
        rkeys.push(*rkey);
        cids.push(write.map(|w| w.cid.as_str()));
        revs.push(candidate.and_then(|c| c.key.rev));
        seqs.push(candidate.map(|c| c.key.seq));
        lives.push(write.is_some());
        subjects.push(write.and_then(|w| w.facts.subject.as_deref()));
        quotes.push(write.and_then(|w| w.facts.quote_subject.as_deref()));
        records.push(write.map(|w| w.json.as_str()));
    }
    // One statement inserts the missing rows and locks the existing ones (the
    // false WHERE locks without writing), in uri order: no batch ever waits
    // for another's uncommitted insert while holding locks that one needs.
    let inserted: HashSet<String> = query(
        tx,
        "INSERT INTO records AS r (uri, did, collection, rkey, cid, rev, seq, live, subject, quote_subject, record) \
         SELECT v.uri, v.did, v.collection, v.rkey, v.cid, v.rev, v.seq, v.live, v.subject, v.quote_subject, \
                v.record::jsonb \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], \
                     $8::bool[], $9::text[], $10::text[], $11::text[]) \
           AS v(uri, did, collection, rkey, cid, rev, seq, live, subject, quote_subject, record) \
         ORDER BY v.uri \
         ON CONFLICT (uri) DO UPDATE SET live = r.live WHERE false \
         RETURNING uri",
        &[&uris, &dids, &collections, &rkeys, &cids, &revs, &seqs, &lives, &subjects, &quotes, &records],
        "inserting and locking records",
    )
    .await?
    .iter()
    .map(|row| row.get(0))
    .collect();
    let existing: Vec<&str> = uris
        .iter()
        .copied()
        .filter(|uri| !inserted.contains(*uri))
        .collect();
    let mut stored = HashMap::with_capacity(existing.len());
    if !existing.is_empty() {
        for row in query(
            tx,
            "SELECT uri, did, collection, live, rev, seq, subject, quote_subject FROM records WHERE uri = ANY($1)",
            &[&existing],
            "reading locked records",
        )
        .await?
        {
            stored.insert(
                row.get(0),
                Stored {
                    did: row.get(1),
                    collection: row.get(2),
                    live: row.get(3),
                    rev: row.get(4),
                    seq: row.get(5),
                    subject: row.get(6),
                    quote_subject: row.get(7),
                },
            );
        }
    }
    Ok((stored, inserted))
}

/// One row of the `records` update.
struct RecordUpdate<'a> {
    uri: &'a str,
    cid: Option<&'a str>,
    rev: Option<&'a str>,
    seq: Option<i64>,
    live: bool,
    subject: Option<&'a str>,
    quote_subject: Option<&'a str>,
    record: Option<&'a str>,
}

#[derive(Default)]
struct PostDelta([i64; 4]);
#[derive(Default)]
struct ActorDelta([i64; 3]);

const LIKES: usize = 0;
const REPOSTS: usize = 1;
const REPLIES: usize = 2;
const QUOTES: usize = 3;
const FOLLOWERS: usize = 0;
const FOLLOWS: usize = 1;
const POSTS: usize = 2;

/// What one applied batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub events: u64,
    pub records_changed: u64,
}

#[derive(Default)]
struct ActorUpdate<'a> {
    handle: Option<(i64, Option<&'a str>)>,
    status: Option<(i64, &'a str)>,
    deleted_seq: Option<i64>,
    progress: Option<(i64, Option<&'a str>)>,
}

/// Applies `events` in one transaction and commits it.
pub async fn apply_batch(client: &mut Client, events: &[&Event]) -> Result<ApplyStats, IndexError> {
    // Account deletions go in a transaction of their own: it locks those
    // actors exclusively, while ordinary batches only share actor locks.
    // Order does not matter (writes are ordered by rev/seq and deleted_seq),
    // and both commit before the entries are acknowledged.
    let (deletions, ordinary): (Vec<&Event>, Vec<&Event>) = events.iter().partition(
        |event| matches!(event, Event::Account { status, .. } if status == ACCOUNT_DELETED),
    );
    let mut stats = ApplyStats::default();
    for part in [deletions, ordinary] {
        if !part.is_empty() {
            stats.records_changed += apply_transaction(client, &part).await?.records_changed;
        }
    }
    stats.events = events.len() as u64;
    Ok(stats)
}

async fn apply_transaction(
    client: &mut Client,
    events: &[&Event],
) -> Result<ApplyStats, IndexError> {
    let (actor_updates, commits) = collect(events);
    if !actor_updates.is_empty() {
        // Committed on its own, before the batch: creating actor rows is
        // idempotent, and no batch then waits on another's uncommitted
        // actor insert while holding locks that one needs.
        let dids: Vec<&str> = actor_updates.keys().copied().collect();
        let statement = client
            .prepare_cached(
                "INSERT INTO actors (did) SELECT d FROM unnest($1::text[]) AS d ORDER BY d \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(IndexError::pg("preparing the actor insert"))?;
        client
            .execute(&statement, &[&dids])
            .await
            .map_err(IndexError::pg("inserting actors"))?;
    }
    let tx = client
        .transaction()
        .await
        .map_err(IndexError::pg("starting a batch transaction"))?;
    let stats = apply_in(&tx, &actor_updates, &commits).await?;
    tx.commit()
        .await
        .map_err(IndexError::pg("committing a batch"))?;
    Ok(stats)
}

type ActorUpdates<'a> = BTreeMap<&'a str, ActorUpdate<'a>>;

/// What the batch changes per actor, and its commits.
fn collect<'a>(events: &[&'a Event]) -> (ActorUpdates<'a>, Vec<&'a Commit>) {
    let mut actor_updates: ActorUpdates<'a> = BTreeMap::new();
    let mut commits: Vec<&Commit> = Vec::new();
    for event in events {
        match event {
            Event::Commit(commit) => {
                commits.push(commit);
                let update = actor_updates.entry(commit.repo.as_str()).or_default();
                if update
                    .progress
                    .map(|(seq, _)| seq < commit.seq)
                    .unwrap_or(true)
                {
                    update.progress = Some((commit.seq, commit.rev.as_deref()));
                }
            }
            Event::Identity { did, handle, seq } => {
                let update = actor_updates.entry(did.as_str()).or_default();
                if update.handle.map(|(old, _)| old < *seq).unwrap_or(true) {
                    update.handle = Some((*seq, handle.as_deref()));
                }
            }
            Event::Account { did, status, seq } => {
                let update = actor_updates.entry(did.as_str()).or_default();
                if update.status.map(|(old, _)| old < *seq).unwrap_or(true) {
                    update.status = Some((*seq, status.as_str()));
                }
                if status == ACCOUNT_DELETED {
                    update.deleted_seq = Some(update.deleted_seq.map_or(*seq, |old| old.max(*seq)));
                }
            }
            Event::Ignored { .. } => {}
        }
    }
    (actor_updates, commits)
}

async fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    what: &str,
) -> Result<u64, IndexError> {
    let statement = tx
        .prepare_cached(sql)
        .await
        .map_err(IndexError::pg(format!("preparing {what}")))?;
    tx.execute(&statement, params)
        .await
        .map_err(IndexError::pg(what.to_owned()))
}

async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    what: &str,
) -> Result<Vec<tokio_postgres::Row>, IndexError> {
    let statement = tx
        .prepare_cached(sql)
        .await
        .map_err(IndexError::pg(format!("preparing {what}")))?;
    tx.query(&statement, params)
        .await
        .map_err(IndexError::pg(what.to_owned()))
}

async fn apply_in(
    tx: &Transaction<'_>,
    actor_updates: &ActorUpdates<'_>,
    commits: &[&Commit],
) -> Result<ApplyStats, IndexError> {
    let stats = ApplyStats::default();
    if actor_updates.is_empty() {
        return Ok(stats);
    }

    // 1. actors, locked in one pass in did order: exclusively in a
    // deletion transaction, shared (key-share) otherwise, so a deletion and
    // a late commit of the same repo serialize while ordinary batches share.
    let dids: Vec<&str> = actor_updates.keys().copied().collect();
    let deleting: Vec<&str> = actor_updates
        .iter()
        .filter(|(_, update)| update.deleted_seq.is_some())
        .map(|(did, _)| *did)
        .collect();
    let lock_sql = if deleting.is_empty() {
        "SELECT did, deleted_seq FROM actors WHERE did = ANY($1) ORDER BY did FOR KEY SHARE"
    } else {
        "SELECT did, deleted_seq FROM actors WHERE did = ANY($1) ORDER BY did FOR UPDATE"
    };
    let mut deleted_seq: HashMap<String, i64> = HashMap::new();
    for row in query(tx, lock_sql, &[&dids], "locking actors").await? {
        let did: String = row.get(0);
        let stored: Option<i64> = row.get(1);
        let batch = actor_updates
            .get(did.as_str())
            .and_then(|update| update.deleted_seq);
        if let Some(seq) = stored.into_iter().chain(batch).max() {
            deleted_seq.insert(did, seq);
        }
    }

    // 2. records: pick this batch's newest op per uri, ignoring ops that a
    // later account deletion already superseded.
    let mut candidates: BTreeMap<&str, Candidate<'_>> = BTreeMap::new();
    for commit in commits {
        if deleted_seq
            .get(&commit.repo)
            .is_some_and(|deleted| commit.seq <= *deleted)
        {
            continue;
        }
        for (op_index, op) in commit.ops.iter().enumerate() {
            let candidate = Candidate {
                key: OrderKey {
                    rev: commit.rev.as_deref(),
                    seq: commit.seq,
                    op_index,
                },
                did: &commit.repo,
                collection: &op.collection,
                rkey: &op.rkey,
                write: op.write.as_ref(),
            };
            match candidates.get(op.uri.as_str()) {
                Some(existing) if key_cmp(&existing.key, &candidate.key).is_ge() => {}
                _ => {
                    candidates.insert(&op.uri, candidate);
                }
            }
        }
    }
    let mut touched: BTreeMap<&str, (&str, &str, &str)> = candidates
        .iter()
        .map(|(uri, c)| (*uri, (c.did, c.collection, c.rkey)))
        .collect();
    let swept = if deleting.is_empty() {
        Vec::new()
    } else {
        query(
            tx,
            "SELECT uri, did, collection, rkey FROM records WHERE did = ANY($1) AND live",
            &[&deleting],
            "finding records of deleted accounts",
        )
        .await?
    };
    for row in &swept {
        touched
            .entry(row.get(0))
            .or_insert((row.get(1), row.get(2), row.get(3)));
    }
    if touched.is_empty() {
        write_actor_updates(tx, actor_updates).await?;
        return Ok(stats);
    }
    let touched: Vec<(&str, (&str, &str, &str))> = touched.into_iter().collect();
    let (stored, inserted) = lock_records(tx, &touched, &candidates).await?;

    // 3. transitions
    let mut updates: Vec<RecordUpdate<'_>> = Vec::new();
    let mut post_deltas: BTreeMap<String, PostDelta> = BTreeMap::new();
    let mut actor_deltas: BTreeMap<String, ActorDelta> = BTreeMap::new();
    let mut kind_upserts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut kind_deletes: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut notifications_cleared: Vec<&str> = Vec::new();
    let mut notifications = NotificationRows::default();
    let mut stored = stored;
    for (uri, (did, collection, _)) in &touched {
        if inserted.contains(*uri) {
            stored.insert((*uri).to_owned(), Stored::absent(did, collection));
        }
    }
    for (uri, (did, _, _)) in &touched {
        let fresh = inserted.contains(*uri);
        let Some(old) = stored.get(*uri) else {
            continue;
        };
        let candidate = candidates.get(*uri);
        let deleted = deleted_seq.get(&old.did).copied();
        let update = match candidate {
            Some(candidate)
                if old.seq.is_none()
                    || is_newer(
                        &candidate.key,
                        old.rev.as_deref(),
                        old.seq.unwrap_or(i64::MIN),
                    ) =>
            {
                let write = candidate.write;
                RecordUpdate {
                    uri,
                    cid: write.map(|w| w.cid.as_str()),
                    rev: candidate.key.rev,
                    seq: Some(candidate.key.seq),
                    live: write.is_some(),
                    subject: write.and_then(|w| w.facts.subject.as_deref()),
                    quote_subject: write.and_then(|w| w.facts.quote_subject.as_deref()),
                    record: write.map(|w| w.json.as_str()),
                }
            }
            _ => {
                // No newer op: only an account deletion can change this record.
                let killed =
                    old.live && deleted.is_some_and(|d| old.seq.is_some_and(|seq| seq <= d));
                if !killed {
                    continue;
                }
                RecordUpdate {
                    uri,
                    cid: None,
                    rev: old.rev.as_deref(),
                    seq: old.seq,
                    live: false,
                    subject: None,
                    quote_subject: None,
                    record: None,
                }
            }
        };
        if old.live {
            count(
                &mut post_deltas,
                &mut actor_deltas,
                &old.collection,
                &old.did,
                old.subject.as_deref(),
                old.quote_subject.as_deref(),
                -1,
            );
            if matches!(old.collection.as_str(), POST | LIKE | REPOST | FOLLOW) {
                notifications_cleared.push(uri);
            }
        }
        if update.live {
            count(
                &mut post_deltas,
                &mut actor_deltas,
                &old.collection,
                &old.did,
                update.subject,
                update.quote_subject,
                1,
            );
            if let (Some(write), Some(cid)) = (candidate.and_then(|c| c.write), update.cid) {
                notifications.push(did, uri, cid, write);
            }
        }
        if let Some(kind) = kind_table(&old.collection) {
            if update.live {
                kind_upserts.entry(kind.collection).or_default().push(uri);
            } else if old.live {
                kind_deletes
                    .entry(kind.collection.to_owned())
                    .or_default()
                    .push(uri);
            }
        }
        // A freshly inserted row already holds this state.
        if !fresh {
            updates.push(update);
        }
    }

    // 4. writes
    write_records(tx, &updates).await?;
    for (collection, uris) in &kind_deletes {
        if let Some(kind) = kind_table(collection) {
            exec(
                tx,
                &kind.delete_sql(),
                &[uris],
                &format!("deleting from {}", kind.table),
            )
            .await?;
        }
    }
    for (collection, uris) in &kind_upserts {
        if let Some(kind) = kind_table(collection) {
            exec(
                tx,
                &kind.upsert_sql(),
                &[uris],
                &format!("writing {}", kind.table),
            )
            .await?;
        }
    }
    write_counts(tx, &post_deltas, &actor_deltas).await?;
    if !notifications_cleared.is_empty() {
        exec(
            tx,
            "DELETE FROM notifications n USING unnest($1::text[]) AS u(uri) WHERE n.record_uri = u.uri",
            &[&notifications_cleared],
            "deleting notifications",
        )
        .await?;
    }
    notifications.write(tx).await?;
    // Last, so the row locks it takes are held only until the commit.
    write_actor_updates(tx, actor_updates).await?;
    Ok(ApplyStats {
        records_changed: updates.len() as u64,
        ..stats
    })
}

/// Adds `sign` times the contribution of one live record to the aggregates.
fn count(
    posts: &mut BTreeMap<String, PostDelta>,
    actors: &mut BTreeMap<String, ActorDelta>,
    collection: &str,
    did: &str,
    subject: Option<&str>,
    quote_subject: Option<&str>,
    sign: i64,
) {
    let mut post =
        |uri: &str, field: usize| posts.entry(uri.to_owned()).or_default().0[field] += sign;
    match collection {
        POST => {
            if let Some(parent) = subject {
                post(parent, REPLIES);
            }
            if let Some(quoted) = quote_subject {
                post(quoted, QUOTES);
            }
            actors.entry(did.to_owned()).or_default().0[POSTS] += sign;
        }
        LIKE => {
            if let Some(subject) = subject {
                post(subject, LIKES);
            }
        }
        REPOST => {
            if let Some(subject) = subject {
                post(subject, REPOSTS);
            }
        }
        FOLLOW => {
            actors.entry(did.to_owned()).or_default().0[FOLLOWS] += sign;
            if let Some(subject) = subject {
                actors.entry(subject.to_owned()).or_default().0[FOLLOWERS] += sign;
            }
        }
        _ => {}
    }
}

/// Applies the batch's handle, status, deletion and progress changes to its
/// (existing) actor rows, locking them in did order.
async fn write_actor_updates(
    tx: &Transaction<'_>,
    updates: &ActorUpdates<'_>,
) -> Result<(), IndexError> {
    let mut dids = Vec::with_capacity(updates.len());
    let mut handle_seqs: Vec<Option<i64>> = Vec::with_capacity(updates.len());
    let mut handles: Vec<Option<&str>> = Vec::with_capacity(updates.len());
    let mut status_seqs: Vec<Option<i64>> = Vec::with_capacity(updates.len());
    let mut statuses: Vec<Option<&str>> = Vec::with_capacity(updates.len());
    let mut deleted_seqs: Vec<Option<i64>> = Vec::with_capacity(updates.len());
    let mut progress_seqs: Vec<Option<i64>> = Vec::with_capacity(updates.len());
    let mut progress_revs: Vec<Option<&str>> = Vec::with_capacity(updates.len());
    for (did, update) in updates {
        dids.push(*did);
        handle_seqs.push(update.handle.map(|(seq, _)| seq));
        handles.push(update.handle.and_then(|(_, handle)| handle));
        status_seqs.push(update.status.map(|(seq, _)| seq));
        statuses.push(update.status.map(|(_, status)| status));
        deleted_seqs.push(update.deleted_seq);
        progress_seqs.push(update.progress.map(|(seq, _)| seq));
        progress_revs.push(update.progress.and_then(|(_, rev)| rev));
    }
    exec(
        tx,
        "INSERT INTO actors AS a (did, handle, handle_seq, status, status_seq, deleted_seq, last_seq, last_rev, indexed) \
         SELECT v.did, v.handle, v.handle_seq, COALESCE(v.status, 'active'), v.status_seq, v.deleted_seq, \
                v.last_seq, v.last_rev, true \
         FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::int8[], $7::int8[], $8::text[]) \
           AS v(did, handle_seq, handle, status_seq, status, deleted_seq, last_seq, last_rev) \
         ORDER BY v.did \
         ON CONFLICT (did) DO UPDATE SET \
           handle = CASE WHEN excluded.handle_seq IS NOT NULL \
                          AND (a.handle_seq IS NULL OR a.handle_seq < excluded.handle_seq) \
                         THEN excluded.handle ELSE a.handle END, \
           handle_seq = GREATEST(a.handle_seq, excluded.handle_seq), \
           status = CASE WHEN excluded.status_seq IS NOT NULL \
                          AND (a.status_seq IS NULL OR a.status_seq < excluded.status_seq) \
                         THEN excluded.status ELSE a.status END, \
           status_seq = GREATEST(a.status_seq, excluded.status_seq), \
           deleted_seq = GREATEST(a.deleted_seq, excluded.deleted_seq), \
           last_rev = CASE WHEN excluded.last_seq IS NOT NULL \
                            AND (a.last_seq IS NULL OR a.last_seq < excluded.last_seq) \
                           THEN excluded.last_rev ELSE a.last_rev END, \
           last_seq = GREATEST(a.last_seq, excluded.last_seq), \
           indexed = true",
        &[&dids, &handle_seqs, &handles, &status_seqs, &statuses, &deleted_seqs, &progress_seqs, &progress_revs],
        "updating actors",
    )
    .await?;
    Ok(())
}

async fn write_records(
    tx: &Transaction<'_>,
    updates: &[RecordUpdate<'_>],
) -> Result<(), IndexError> {
    if updates.is_empty() {
        return Ok(());
    }
    let uris: Vec<&str> = updates.iter().map(|u| u.uri).collect();
    let cids: Vec<Option<&str>> = updates.iter().map(|u| u.cid).collect();
    let revs: Vec<Option<&str>> = updates.iter().map(|u| u.rev).collect();
    let seqs: Vec<Option<i64>> = updates.iter().map(|u| u.seq).collect();
    let lives: Vec<bool> = updates.iter().map(|u| u.live).collect();
    let subjects: Vec<Option<&str>> = updates.iter().map(|u| u.subject).collect();
    let quotes: Vec<Option<&str>> = updates.iter().map(|u| u.quote_subject).collect();
    let records: Vec<Option<&str>> = updates.iter().map(|u| u.record).collect();
    exec(
        tx,
        "UPDATE records r SET cid = v.cid, rev = v.rev, seq = v.seq, live = v.live, subject = v.subject, \
           quote_subject = v.quote_subject, record = v.record::jsonb, indexed_at = now() \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bool[], $6::text[], $7::text[], $8::text[]) \
           AS v(uri, cid, rev, seq, live, subject, quote_subject, record) \
         WHERE r.uri = v.uri",
        &[&uris, &cids, &revs, &seqs, &lives, &subjects, &quotes, &records],
        "writing records",
    )
    .await?;
    Ok(())
}

async fn write_counts(
    tx: &Transaction<'_>,
    posts: &BTreeMap<String, PostDelta>,
    actors: &BTreeMap<String, ActorDelta>,
) -> Result<(), IndexError> {
    let posts: Vec<(&String, &PostDelta)> = posts.iter().filter(|(_, d)| d.0 != [0; 4]).collect();
    if !posts.is_empty() {
        let uris: Vec<&str> = posts.iter().map(|(uri, _)| uri.as_str()).collect();
        let column = |field: usize| posts.iter().map(|(_, d)| d.0[field]).collect::<Vec<i64>>();
        let (likes, reposts, replies, quotes) = (
            column(LIKES),
            column(REPOSTS),
            column(REPLIES),
            column(QUOTES),
        );
        exec(
            tx,
            "INSERT INTO post_counts (uri, likes, reposts, replies, quotes) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) ORDER BY 1 \
             ON CONFLICT (uri) DO UPDATE SET likes = post_counts.likes + excluded.likes, \
               reposts = post_counts.reposts + excluded.reposts, replies = post_counts.replies + excluded.replies, \
               quotes = post_counts.quotes + excluded.quotes",
            &[&uris, &likes, &reposts, &replies, &quotes],
            "updating post counts",
        )
        .await?;
    }
    let actors: Vec<(&String, &ActorDelta)> =
        actors.iter().filter(|(_, d)| d.0 != [0; 3]).collect();
    if !actors.is_empty() {
        let dids: Vec<&str> = actors.iter().map(|(did, _)| did.as_str()).collect();
        let column = |field: usize| actors.iter().map(|(_, d)| d.0[field]).collect::<Vec<i64>>();
        let (followers, follows, posts) = (column(FOLLOWERS), column(FOLLOWS), column(POSTS));
        exec(
            tx,
            "INSERT INTO actor_counts (did, followers, follows, posts) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) ORDER BY 1 \
             ON CONFLICT (did) DO UPDATE SET followers = actor_counts.followers + excluded.followers, \
               follows = actor_counts.follows + excluded.follows, posts = actor_counts.posts + excluded.posts",
            &[&dids, &followers, &follows, &posts],
            "updating actor counts",
        )
        .await?;
    }
    Ok(())
}

#[derive(Default)]
struct NotificationRows<'a> {
    recipients: Vec<&'a str>,
    authors: Vec<&'a str>,
    reasons: Vec<&'static str>,
    reason_subjects: Vec<Option<&'a str>>,
    record_uris: Vec<&'a str>,
    record_cids: Vec<&'a str>,
    created_ats: Vec<Option<&'a str>>,
}

impl<'a> NotificationRows<'a> {
    fn push(&mut self, author: &'a str, uri: &'a str, cid: &'a str, write: &'a Write) {
        for draft in &write.facts.notifications {
            self.recipients.push(&draft.recipient);
            self.authors.push(author);
            self.reasons.push(draft.reason);
            self.reason_subjects.push(draft.reason_subject.as_deref());
            self.record_uris.push(uri);
            self.record_cids.push(cid);
            self.created_ats.push(write.created_at.as_deref());
        }
    }

    async fn write(&self, tx: &Transaction<'_>) -> Result<(), IndexError> {
        if self.recipients.is_empty() {
            return Ok(());
        }
        exec(
            tx,
            "INSERT INTO notifications (recipient_did, author_did, reason, reason_subject, record_uri, record_cid, created_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])",
            &[
                &self.recipients,
                &self.authors,
                &self.reasons,
                &self.reason_subjects,
                &self.record_uris,
                &self.record_cids,
                &self.created_ats,
            ],
            "inserting notifications",
        )
        .await?;
        Ok(())
    }
}
