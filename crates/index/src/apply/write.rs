//! The statements of a batch transaction. Each takes whole arrays (one
//! set-based statement per table), and the final writes are pipelined: sent
//! together on the connection, executed in order, awaited once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use deadpool_postgres::Transaction;
use futures_util::future::join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::plan::{
    ActorUpdate, Candidate, Changes, NotificationRows, Stored, Touched, FEEDGENS, FOLLOWERS,
    FOLLOWS, LABELERS, LIKES, LISTS, POSTS, QUOTES, REPLIES, REPOSTS, STARTER_PACKS,
};
use crate::error::IndexError;
use crate::kinds::kind_table;
use crate::records::{FOLLOW, LIKE, POST, REPOST};

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// One statement waiting to be sent.
struct Pending<'a> {
    sql: String,
    what: String,
    params: Vec<Param<'a>>,
}

impl<'a> Pending<'a> {
    fn new(sql: impl Into<String>, what: impl Into<String>, params: Vec<Param<'a>>) -> Self {
        Pending {
            sql: sql.into(),
            what: what.into(),
            params,
        }
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|param| &**param as &(dyn ToSql + Sync))
            .collect()
    }
}

async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    what: &str,
) -> Result<Vec<Row>, IndexError> {
    let statement = tx
        .prepare_cached(sql)
        .await
        .map_err(IndexError::pg(format!("preparing {what}")))?;
    tx.query(&statement, params)
        .await
        .map_err(IndexError::pg(what.to_owned()))
}

/// Deletions already recorded for `dids`: did -> deleted seq.
pub(super) async fn deleted_seqs(
    tx: &Transaction<'_>,
    dids: &[&str],
) -> Result<HashMap<String, i64>, IndexError> {
    Ok(query(
        tx,
        "SELECT did, deleted_seq FROM actors WHERE did = ANY($1) AND deleted_seq IS NOT NULL",
        &[&dids],
        "reading account deletions",
    )
    .await?
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect())
}

/// Collections whose live records `records` does not index by did: their
/// projection tables lead an index with `did` (migration 0007, whose partial
/// index predicate lists the same four).
const FOUND_BY_PROJECTION: [&str; 4] = [POST, LIKE, REPOST, FOLLOW];

/// Live records of the accounts in `$1`: `uri, did, collection, rkey`. The
/// first branch repeats the predicate of migration 0007's partial index, so
/// that the planner can use it.
static LIVE_RECORDS_OF: LazyLock<String> = LazyLock::new(|| {
    let quoted: Vec<String> = FOUND_BY_PROJECTION
        .iter()
        .map(|collection| format!("'{collection}'"))
        .collect();
    let mut sql = format!(
        "SELECT uri, did, collection, rkey FROM records WHERE did = ANY($1) AND live \
         AND collection NOT IN ({})",
        quoted.join(", ")
    );
    for (collection, quoted) in FOUND_BY_PROJECTION.iter().zip(&quoted) {
        let table = kind_table(collection)
            .expect("posts, likes, reposts and follows have projection tables")
            .table;
        sql.push_str(&format!(
            " UNION ALL SELECT uri, did, {quoted}, rkey FROM {table} WHERE did = ANY($1)"
        ));
    }
    sql
});

/// A live record of `$1`'s accounts written at or before `$2`, their deletion.
static DELETED_RECORD_REMAINING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT r.uri FROM ({}) AS l \
         JOIN unnest($1::text[], $2::int8[]) AS d(did, seq) ON d.did = l.did \
         JOIN records r ON r.uri = l.uri AND r.live AND r.seq <= d.seq LIMIT 1",
        LIVE_RECORDS_OF.as_str()
    )
});

/// Live records of the accounts being deleted: `uri, did, collection, rkey`.
pub(super) async fn live_records_of(
    tx: &Transaction<'_>,
    dids: &[&str],
) -> Result<Vec<Row>, IndexError> {
    query(
        tx,
        &LIVE_RECORDS_OF,
        &[&dids],
        "finding records of deleted accounts",
    )
    .await
}

/// True when a record written at or before its account's deletion is
/// still live: another transaction committed it after this one swept.
pub(super) async fn deleted_records_remain(
    tx: &Transaction<'_>,
    deleting: &[(&str, i64)],
) -> Result<bool, IndexError> {
    let dids: Vec<&str> = deleting.iter().map(|(did, _)| *did).collect();
    let seqs: Vec<i64> = deleting.iter().map(|(_, seq)| *seq).collect();
    Ok(!query(
        tx,
        &DELETED_RECORD_REMAINING,
        &[&dids, &seqs],
        "checking records of deleted accounts",
    )
    .await?
    .is_empty())
}

/// Locks every touched record in uri order. Records this batch creates are
/// inserted with their final state by the same statement (returned in the
/// set); the current state of the others is read under the lock.
pub(super) async fn lock_records(
    tx: &Transaction<'_>,
    touched: &Touched<'_>,
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

/// Writes `changes` and the batch's actor updates, pipelined. Counts and
/// actors come last, so the row locks they take are held only until the
/// commit. Returns
/// the deletions recorded on the batch's actors (did -> deleted seq), read
/// under those locks.
pub(super) async fn write_changes<'a>(
    tx: &Transaction<'_>,
    changes: Changes<'a>,
    actors: &BTreeMap<&'a str, ActorUpdate<'a>>,
) -> Result<Vec<(String, i64)>, IndexError> {
    let mut pending = Vec::new();
    records(&changes, &mut pending);
    let counted = counts(&changes);
    for (table, (kind, uris)) in changes.kind_deletes {
        pending.push(Pending::new(
            kind.delete_sql(),
            format!("deleting from {table}"),
            vec![Box::new(uris)],
        ));
    }
    for (table, rows) in changes.kind_inserts {
        let mut params: Vec<Param<'a>> = vec![
            Box::new(rows.uris),
            Box::new(rows.dids),
            Box::new(rows.rkeys),
            Box::new(rows.cids),
        ];
        for column in rows.columns {
            params.push(Box::new(column));
        }
        pending.push(Pending::new(
            rows.kind.insert_sql(),
            format!("writing {table}"),
            params,
        ));
    }
    notifications(
        changes.notifications_cleared,
        changes.notifications,
        &mut pending,
    );
    // Count rows of popular posts and actors are shared by concurrent
    // batches: written last, their locks are held only until the commit.
    pending.extend(counted);
    pending.push(actor_update(actors));

    // Prepared one by one first (cached after the first batch), so that the
    // executions below are sent in exactly this order.
    let mut statements = Vec::with_capacity(pending.len());
    for statement in &pending {
        statements.push(
            tx.prepare_cached(&statement.sql)
                .await
                .map_err(IndexError::pg(format!("preparing {}", statement.what)))?,
        );
    }
    let results = join_all(pending.iter().zip(&statements).map(
        |(pending, statement)| async move {
            tx.query(statement, &pending.refs())
                .await
                .map_err(IndexError::pg(pending.what.clone()))
        },
    ))
    .await;
    // After a failure the later statements only report the aborted
    // transaction: the first error in order is the cause.
    let mut actor_rows = Vec::new();
    for result in results {
        actor_rows = result?;
    }
    Ok(actor_rows
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

fn records<'a>(changes: &Changes<'a>, pending: &mut Vec<Pending<'a>>) {
    let updates = &changes.records;
    if updates.is_empty() {
        return;
    }
    let uris: Vec<&str> = updates.iter().map(|u| u.uri).collect();
    let cids: Vec<Option<&str>> = updates.iter().map(|u| u.cid).collect();
    let revs: Vec<Option<&str>> = updates.iter().map(|u| u.rev).collect();
    let seqs: Vec<Option<i64>> = updates.iter().map(|u| u.seq).collect();
    let lives: Vec<bool> = updates.iter().map(|u| u.live).collect();
    let subjects: Vec<Option<&str>> = updates.iter().map(|u| u.subject).collect();
    let quotes: Vec<Option<&str>> = updates.iter().map(|u| u.quote_subject).collect();
    let records: Vec<Option<&str>> = updates.iter().map(|u| u.record).collect();
    pending.push(Pending::new(
        "UPDATE records r SET cid = v.cid, rev = v.rev, seq = v.seq, live = v.live, subject = v.subject, \
           quote_subject = v.quote_subject, record = v.record::jsonb, indexed_at = now() \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bool[], $6::text[], $7::text[], $8::text[]) \
           AS v(uri, cid, rev, seq, live, subject, quote_subject, record) \
         WHERE r.uri = v.uri",
        "writing records",
        vec![
            Box::new(uris),
            Box::new(cids),
            Box::new(revs),
            Box::new(seqs),
            Box::new(lives),
            Box::new(subjects),
            Box::new(quotes),
            Box::new(records),
        ],
    ));
}

fn counts(changes: &Changes<'_>) -> Vec<Pending<'static>> {
    let mut pending = Vec::new();
    let posts: Vec<_> = changes
        .post_deltas
        .iter()
        .filter(|(_, d)| d.0 != [0; 4])
        .collect();
    if !posts.is_empty() {
        let uris: Vec<String> = posts.iter().map(|(uri, _)| (*uri).clone()).collect();
        let column = |field: usize| posts.iter().map(|(_, d)| d.0[field]).collect::<Vec<i64>>();
        pending.push(Pending::new(
            POST_COUNTS_SQL.as_str(),
            "updating post counts",
            vec![
                Box::new(uris),
                Box::new(column(LIKES)),
                Box::new(column(REPOSTS)),
                Box::new(column(REPLIES)),
                Box::new(column(QUOTES)),
            ],
        ));
    }
    let actors: Vec<_> = changes
        .actor_deltas
        .iter()
        .filter(|(_, d)| d.0 != [0; 7])
        .collect();
    if !actors.is_empty() {
        let dids: Vec<String> = actors.iter().map(|(did, _)| (*did).clone()).collect();
        let column = |field: usize| actors.iter().map(|(_, d)| d.0[field]).collect::<Vec<i64>>();
        pending.push(Pending::new(
            ACTOR_COUNTS_SQL.as_str(),
            "updating actor counts",
            vec![
                Box::new(dids),
                Box::new(column(FOLLOWERS)),
                Box::new(column(FOLLOWS)),
                Box::new(column(POSTS)),
                Box::new(column(LISTS)),
                Box::new(column(FEEDGENS)),
                Box::new(column(STARTER_PACKS)),
                Box::new(column(LABELERS)),
            ],
        ));
    }
    pending
}

/// Counter statements, built once: parameters are the keys, then one array
/// of deltas per counter in the order of the `*_COUNTS` field indexes.
static POST_COUNTS_SQL: LazyLock<String> = LazyLock::new(|| {
    add_deltas_sql(
        "post_counts",
        "uri",
        &["likes", "reposts", "replies", "quotes"],
    )
});
static ACTOR_COUNTS_SQL: LazyLock<String> = LazyLock::new(|| {
    add_deltas_sql(
        "actor_counts",
        "did",
        &[
            "followers",
            "follows",
            "posts",
            "lists",
            "feedgens",
            "starter_packs",
            "labelers",
        ],
    )
});

/// Adds per-key deltas to the counters of `table`. Rows that exist are
/// updated in place; only missing keys go through an upsert, because
/// `ON CONFLICT DO UPDATE` pays an extra index probe and a row lock (with its
/// WAL record) for every row, and nearly every counter row exists. Keys are
/// taken in sorted order both times, so concurrent batches lock shared rows
/// in the same order.
fn add_deltas_sql(table: &str, key: &str, counters: &[&str]) -> String {
    let arrays: Vec<String> = std::iter::once("$1::text[]".to_owned())
        .chain((2..=counters.len() + 1).map(|n| format!("${n}::int8[]")))
        .collect();
    let add = |source: &str| {
        counters
            .iter()
            .map(|c| format!("{c} = t.{c} + {source}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "WITH v AS (SELECT * FROM unnest({arrays}) AS v({key}, {columns}) ORDER BY 1), \
         updated AS (UPDATE {table} t SET {from_v} FROM v WHERE t.{key} = v.{key} RETURNING t.{key}) \
         INSERT INTO {table} AS t ({key}, {columns}) \
         SELECT * FROM v WHERE v.{key} NOT IN (SELECT {key} FROM updated) ORDER BY 1 \
         ON CONFLICT ({key}) DO UPDATE SET {from_excluded}",
        arrays = arrays.join(", "),
        columns = counters.join(", "),
        from_v = add("v"),
        from_excluded = add("excluded"),
    )
}

fn notifications<'a>(
    cleared: Vec<&'a str>,
    rows: NotificationRows<'a>,
    pending: &mut Vec<Pending<'a>>,
) {
    if !cleared.is_empty() {
        pending.push(Pending::new(
            "DELETE FROM notifications WHERE record_uri = ANY($1)",
            "deleting notifications",
            vec![Box::new(cleared)],
        ));
    }
    if !rows.recipients.is_empty() {
        pending.push(Pending::new(
            "INSERT INTO notifications (recipient_did, author_did, reason, reason_subject, record_uri, record_cid, created_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])",
            "inserting notifications",
            vec![
                Box::new(rows.recipients),
                Box::new(rows.authors),
                Box::new(rows.reasons),
                Box::new(rows.reason_subjects),
                Box::new(rows.record_uris),
                Box::new(rows.record_cids),
                Box::new(rows.created_ats),
            ],
        ));
    }
}

/// The actor columns a batch sets, given the alias of its new values
/// (`v` in the update, `excluded` in the upsert): handle and status follow
/// the newest event that set them, progress the newest commit.
fn actor_assignments(new: &str) -> String {
    format!(
        "handle = CASE WHEN {new}.handle_seq IS NOT NULL \
                        AND (a.handle_seq IS NULL OR a.handle_seq < {new}.handle_seq) \
                       THEN {new}.handle ELSE a.handle END, \
         handle_seq = GREATEST(a.handle_seq, {new}.handle_seq), \
         status = CASE WHEN {new}.status_seq IS NOT NULL \
                        AND (a.status_seq IS NULL OR a.status_seq < {new}.status_seq) \
                       THEN {new}.status ELSE a.status END, \
         status_seq = GREATEST(a.status_seq, {new}.status_seq), \
         deleted_seq = GREATEST(a.deleted_seq, {new}.deleted_seq), \
         last_rev = CASE WHEN {new}.last_seq IS NOT NULL \
                          AND (a.last_seq IS NULL OR a.last_seq < {new}.last_seq) \
                         THEN {new}.last_rev ELSE a.last_rev END, \
         last_seq = GREATEST(a.last_seq, {new}.last_seq), \
         indexed = true"
    )
}

/// Existing actors (nearly all of a batch's) are updated in place, in did
/// order; only new ones go through the upsert, which costs an extra index
/// probe and a row lock per row (see `add_deltas_sql`).
static ACTOR_UPDATE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH v AS ( \
           SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::int8[], \
                                $7::int8[], $8::text[]) \
             AS v(did, handle_seq, handle, status_seq, status, deleted_seq, last_seq, last_rev) \
           ORDER BY v.did), \
         updated AS ( \
           UPDATE actors a SET {from_v} FROM v WHERE a.did = v.did RETURNING a.did, a.deleted_seq), \
         inserted AS ( \
           INSERT INTO actors AS a (did, handle, handle_seq, status, status_seq, deleted_seq, last_seq, \
                                    last_rev, indexed) \
           SELECT v.did, v.handle, v.handle_seq, COALESCE(v.status, 'active'), v.status_seq, v.deleted_seq, \
                  v.last_seq, v.last_rev, true \
           FROM v WHERE v.did NOT IN (SELECT did FROM updated) ORDER BY v.did \
           ON CONFLICT (did) DO UPDATE SET {from_excluded} \
           RETURNING a.did, a.deleted_seq) \
         SELECT did, deleted_seq FROM updated WHERE deleted_seq IS NOT NULL \
         UNION ALL SELECT did, deleted_seq FROM inserted WHERE deleted_seq IS NOT NULL",
        from_v = actor_assignments("v"),
        from_excluded = actor_assignments("excluded"),
    )
});

/// Creates missing actor rows and applies the batch's handle, status,
/// deletion and progress changes, in did order; returns the deletions
/// recorded on those rows.
fn actor_update<'a>(updates: &BTreeMap<&'a str, ActorUpdate<'a>>) -> Pending<'a> {
    let n = updates.len();
    let mut dids = Vec::with_capacity(n);
    let mut handle_seqs: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut handles: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut status_seqs: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut statuses: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut deleted_seqs: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut progress_seqs: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut progress_revs: Vec<Option<&str>> = Vec::with_capacity(n);
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
    Pending::new(
        ACTOR_UPDATE_SQL.as_str(),
        "updating actors",
        vec![
            Box::new(dids),
            Box::new(handle_seqs),
            Box::new(handles),
            Box::new(status_seqs),
            Box::new(statuses),
            Box::new(deleted_seqs),
            Box::new(progress_seqs),
            Box::new(progress_revs),
        ],
    )
}
