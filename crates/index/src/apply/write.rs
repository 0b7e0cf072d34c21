//! The statements of a batch transaction. Each takes whole arrays (one
//! set-based statement per table), and the final writes are pipelined: sent
//! together on the connection, executed in order, awaited once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use deadpool_postgres::Transaction;
use futures_util::future::join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::compact_rows;
use super::keys::Keys;
use super::plan::{
    column, ActorDelta, ActorUpdate, Candidate, Changes, MirroredRecords, NotificationRows,
    RecordUpdate, Stored, Touched, LIKES, QUOTES, REPLIES, REPOSTS,
};
use super::unnest::{Param, Unnest};
use crate::db::RowExt;
use crate::entry::Write;
use crate::error::IndexError;
use crate::kinds::{kind_table, projected_name, KindTable, OwnState};
use crate::records::{CHAT_DECLARATION, FOLLOW, LIKE, POST, PROFILE, REPOST};

/// One statement waiting to be sent.
pub(super) struct Pending<'a> {
    sql: String,
    what: String,
    params: Vec<Param<'a>>,
}

impl<'a> Pending<'a> {
    pub(super) fn new(
        sql: impl Into<String>,
        what: impl Into<String>,
        params: Vec<Param<'a>>,
    ) -> Self {
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

/// Gives the transaction its id now, before it reads anything: an account
/// deletion waits for every transaction that has one (see `apply`).
pub(super) async fn take_transaction_id(tx: &Transaction<'_>) -> Result<(), IndexError> {
    query(
        tx,
        "SELECT pg_current_xact_id()",
        &[],
        "taking a transaction id",
    )
    .await
    .map(|_| ())
}

/// Deletions already recorded for `dids`: did -> deleted seq.
pub(super) async fn deleted_seqs(
    tx: &Transaction<'_>,
    dids: &[&str],
) -> Result<HashMap<String, i64>, IndexError> {
    const READING: &str = "reading account deletions";
    query(
        tx,
        "SELECT did, deleted_seq FROM actors WHERE did = ANY($1) AND deleted_seq IS NOT NULL",
        &[&dids],
        READING,
    )
    .await?
    .iter()
    .map(|row| Ok((row.col("did", READING)?, row.col("deleted_seq", READING)?)))
    .collect()
}

/// Collections whose records are not in `records` (migration 0010): their
/// tables keep their own state and lead an index with `did`. Migration
/// 0007's partial index of `records` leaves out the same four.
const FOUND_BY_PROJECTION: [&str; 4] = [POST, LIKE, REPOST, FOLLOW];

/// Live records of the accounts in `$1`: `uri, did, collection, rkey, seq`.
/// The first branch repeats the predicate of migration 0007's partial
/// index, so that the planner can use it.
pub(crate) static LIVE_RECORDS_OF: LazyLock<String> = LazyLock::new(|| {
    let quoted: Vec<String> = FOUND_BY_PROJECTION
        .iter()
        .map(|collection| format!("'{collection}'"))
        .collect();
    let mut sql = format!(
        "SELECT uri, did, collection, rkey, seq FROM records WHERE did = ANY($1) AND live \
         AND collection NOT IN ({})",
        quoted.join(", ")
    );
    for (collection, quoted) in FOUND_BY_PROJECTION.iter().zip(&quoted) {
        let kind = kind_table(collection)
            .filter(|kind| kind.own_state.is_some())
            .expect("posts, likes, reposts and follows keep their own state");
        // A compact table is read through its state view, whose `did` is
        // the dictionary's: the filter finds the account's id first.
        let table = kind
            .own_state
            .as_ref()
            .and_then(|state| state.compact.as_ref())
            .map_or(kind.table, |compact| compact.state_view);
        sql.push_str(&format!(
            " UNION ALL SELECT uri, did, {quoted}, rkey, seq FROM {table} WHERE did = ANY($1) AND live"
        ));
    }
    sql
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

/// Locks every touched record, table by table in name order and in uri
/// order within a table. Records this batch creates are inserted with their
/// final state by the same statement (returned in the set); the current
/// state of the others is read under the lock. A record's row is in the
/// table of its collection when that table keeps its own state
/// (`OwnState`), in `records` otherwise.
pub(super) async fn lock_records(
    tx: &Transaction<'_>,
    touched: &Touched<'_>,
    candidates: &BTreeMap<&str, Candidate<'_>>,
    keys: &Keys,
) -> Result<(HashMap<String, Stored>, HashSet<String>), IndexError> {
    type OwnTable = Option<(&'static KindTable, &'static OwnState)>;
    let mut by_table: BTreeMap<&'static str, (OwnTable, Vec<&str>)> = BTreeMap::new();
    for (uri, (_, collection, _)) in touched {
        let own = kind_table(collection)
            .and_then(|kind| kind.own_state.as_ref().map(|state| (kind, state)));
        by_table
            .entry(own.map_or(RECORDS, |(kind, _)| kind.table))
            .or_insert_with(|| (own, Vec::new()))
            .1
            .push(*uri);
    }
    // A compact table's statements name rows by key, read back by these.
    let mut locks: Vec<Pending<'_>> = Vec::with_capacity(by_table.len());
    let mut lock_keys: Vec<Option<compact_rows::ByKey<'_>>> = Vec::with_capacity(by_table.len());
    for (own, uris) in by_table.values() {
        match own {
            Some((
                kind,
                OwnState {
                    compact: Some(compact),
                    ..
                },
            )) => {
                let (lock, by_key) =
                    compact_rows::lock(kind, compact, uris, touched, candidates, keys)?;
                locks.push(lock);
                lock_keys.push(Some(by_key));
            }
            Some((kind, _)) => {
                locks.push(lock_own_state(kind, uris, touched, candidates, keys)?);
                lock_keys.push(None);
            }
            None => {
                locks.push(lock_in_records(uris, touched, candidates));
                lock_keys.push(None);
            }
        }
    }
    const LOCKING: &str = "inserting and locking records";
    let mut inserted = HashSet::with_capacity(touched.len());
    for (rows, by_key) in run_pipelined(tx, &locks).await?.iter().zip(&lock_keys) {
        for row in rows {
            let uri = match by_key {
                Some(by_key) => compact_rows::uri_of(row, by_key, LOCKING)?.to_owned(),
                None => row.col::<String>("uri", LOCKING)?,
            };
            inserted.insert(uri);
        }
    }

    let mut reads = Vec::new();
    let mut read_kinds = Vec::new();
    for (own, uris) in by_table.values() {
        let existing: Vec<&str> = uris
            .iter()
            .copied()
            .filter(|uri| !inserted.contains(*uri))
            .collect();
        if existing.is_empty() {
            continue;
        }
        match own {
            Some((
                _,
                OwnState {
                    compact: Some(compact),
                    ..
                },
            )) => {
                let (read, by_key) = compact_rows::read(compact, &existing, touched, keys)?;
                reads.push(read);
                read_kinds.push((*own, Some(by_key)));
            }
            Some((kind, state)) => {
                reads.push(Pending::new(
                    kind.stored_sql(state),
                    "reading locked records",
                    vec![Box::new(existing)],
                ));
                read_kinds.push((*own, None));
            }
            None => {
                reads.push(Pending::new(
                    "SELECT uri, did, live, rev, seq, subject, quote_subject, collection, \
                     false AS violates_threadgate FROM records WHERE uri = ANY($1)",
                    "reading locked records",
                    vec![Box::new(existing)],
                ));
                read_kinds.push((*own, None));
            }
        }
    }
    let mut stored = HashMap::new();
    for (rows, (own, by_key)) in run_pipelined(tx, &reads).await?.into_iter().zip(read_kinds) {
        for row in rows {
            const READING: &str = "reading locked records";
            if let (Some((kind, _)), Some(by_key)) = (own, &by_key) {
                let uri = compact_rows::uri_of(&row, by_key, READING)?;
                // `by_key` holds only touched uris.
                let did = touched.get(uri).map_or("", |(did, _, _)| *did);
                stored.insert(uri.to_owned(), compact_rows::stored(&row, kind, did)?);
                continue;
            }
            let collection = match own {
                Some((kind, _)) => kind.collection.to_owned(),
                None => row.col("collection", READING)?,
            };
            stored.insert(
                row.col("uri", READING)?,
                Stored {
                    did: row.col("did", READING)?,
                    collection,
                    live: row.col("live", READING)?,
                    rev: row.col("rev", READING)?,
                    seq: row.col("seq", READING)?,
                    subject: row.col("subject", READING)?,
                    quote_subject: row.col("quote_subject", READING)?,
                    violates_threadgate: row.col("violates_threadgate", READING)?,
                },
            );
        }
    }
    Ok((stored, inserted))
}

/// Name under which `records` is grouped with the own-state tables, so
/// that every transaction locks the tables in the same order.
const RECORDS: &str = "records";

/// The `records` lock statement for `uris`: inserts the missing rows and
/// locks the existing ones (the false WHERE locks without writing), in uri
/// order, so no batch ever waits for another's uncommitted insert while
/// holding locks that one needs.
fn lock_in_records<'a>(
    uris: &[&'a str],
    touched: &Touched<'a>,
    candidates: &'a BTreeMap<&str, Candidate<'a>>,
) -> Pending<'a> {
    let n = uris.len();
    let mut state = NewRowState::with_capacity(n);
    let mut collections = Vec::with_capacity(n);
    let mut subjects: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut quotes: Vec<Option<&str>> = Vec::with_capacity(n);
    for uri in uris {
        let (did, collection, rkey) = touched[uri];
        let write = state.push(did, rkey, candidates.get(uri));
        collections.push(collection);
        subjects.push(write.and_then(|w| w.facts.subject.as_deref()));
        quotes.push(write.and_then(|w| w.facts.quote_subject.as_deref()));
    }
    let mut rows = state.into_rows(uris);
    rows.column("collection", collections)
        .column("subject", subjects)
        .column("quote_subject", quotes);
    Pending::new(
        format!(
            "INSERT INTO records AS r (uri, did, rkey, cid, rev, seq, live, record, collection, subject, quote_subject) \
             SELECT v.uri, v.did, v.rkey, v.cid, v.rev, v.seq, v.live, v.record::jsonb, v.collection, v.subject, \
                    v.quote_subject \
             FROM {} \
             ORDER BY v.uri \
             ON CONFLICT (uri) DO UPDATE SET live = r.live WHERE false \
             RETURNING uri",
            rows.rows()
        ),
        "inserting and locking records",
        rows.into_params(),
    )
}

/// The same for a table that keeps its own state: a new row carries the
/// projected columns too, or only its identity and rev when it is born a
/// tombstone.
fn lock_own_state<'a>(
    kind: &'static KindTable,
    uris: &[&'a str],
    touched: &Touched<'a>,
    candidates: &'a BTreeMap<&str, Candidate<'a>>,
    keys: &Keys,
) -> Result<Pending<'a>, IndexError> {
    let n = uris.len();
    let mut state = NewRowState::with_capacity(n);
    let mut columns: Vec<Vec<Option<&str>>> = vec![Vec::with_capacity(n); kind.columns.len()];
    // The ids a post row also keeps (migration 0034), by which its
    // counters are found.
    let (mut actors, mut rkey_ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for uri in uris {
        let (did, _, rkey) = touched[uri];
        let write = state.push(did, rkey, candidates.get(uri));
        push_columns(&mut columns, write);
        let (actor, rkey_id) = keys.record(uri, did, rkey)?;
        actors.push(actor);
        rkey_ids.push(rkey_id);
    }
    let mut rows = state.into_rows(uris);
    push_projected(&mut rows, columns);
    rows.column("actor", actors).column("rkey_id", rkey_ids);
    Ok(Pending::new(
        kind.lock_sql(&rows.rows()),
        format!("inserting and locking {}", kind.table),
        rows.into_params(),
    ))
}

/// The state columns every lock statement inserts a record's row with, one
/// vector per column: the identity, and the final state the batch leaves
/// the record in (its winning op, if any).
struct NewRowState<'a> {
    dids: Vec<&'a str>,
    rkeys: Vec<&'a str>,
    cids: Vec<Option<&'a str>>,
    revs: Vec<Option<&'a str>>,
    seqs: Vec<Option<i64>>,
    lives: Vec<bool>,
    records: Vec<Option<&'a str>>,
}

impl<'a> NewRowState<'a> {
    fn with_capacity(n: usize) -> Self {
        NewRowState {
            dids: Vec::with_capacity(n),
            rkeys: Vec::with_capacity(n),
            cids: Vec::with_capacity(n),
            revs: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            lives: Vec::with_capacity(n),
            records: Vec::with_capacity(n),
        }
    }

    /// The first columns of a lock statement: `uri`, then the state.
    fn into_rows(self, uris: &[&'a str]) -> Unnest<'a> {
        let mut rows = Unnest::new();
        rows.column("uri", uris.to_vec())
            .column("did", self.dids)
            .column("rkey", self.rkeys)
            .column("cid", self.cids)
            .column("rev", self.revs)
            .column("seq", self.seqs)
            .column("live", self.lives)
            .column("record", self.records);
        rows
    }

    /// Appends one record's row; returns its new content, if it is live.
    fn push(
        &mut self,
        did: &'a str,
        rkey: &'a str,
        candidate: Option<&'a Candidate<'a>>,
    ) -> Option<&'a Write> {
        let write = candidate.and_then(|c| c.write);
        self.dids.push(did);
        self.rkeys.push(rkey);
        self.cids.push(write.map(|w| w.cid.as_str()));
        self.revs.push(candidate.and_then(|c| c.key.rev));
        self.seqs.push(candidate.map(|c| c.key.seq));
        self.lives.push(write.is_some());
        self.records.push(write.and_then(Write::stored_json));
        write
    }
}

/// Adds a kind's projected columns, one text array each, after the others.
fn push_projected<'a>(rows: &mut Unnest<'a>, columns: Vec<Vec<Option<&'a str>>>) {
    for (index, values) in columns.into_iter().enumerate() {
        rows.column(projected_name(index), values);
    }
}

/// Appends a write's projected values (all NULL without one) to `columns`.
fn push_columns<'a>(columns: &mut [Vec<Option<&'a str>>], write: Option<&'a Write>) {
    for (index, column) in columns.iter_mut().enumerate() {
        column.push(write.and_then(|w| w.columns.get(index)?.as_deref()));
    }
}

/// Sends `statements` together and waits once; the rows of each, in order.
/// After a failure the later statements only report the aborted
/// transaction, so the first error in order is returned.
async fn run_pipelined(
    tx: &Transaction<'_>,
    statements: &[Pending<'_>],
) -> Result<Vec<Vec<Row>>, IndexError> {
    // Prepared one by one first (cached after the first batch), so that the
    // executions below are sent in exactly this order.
    let mut prepared = Vec::with_capacity(statements.len());
    for statement in statements {
        prepared.push(
            tx.prepare_cached(&statement.sql)
                .await
                .map_err(IndexError::pg(format!("preparing {}", statement.what)))?,
        );
    }
    join_all(
        statements
            .iter()
            .zip(&prepared)
            .map(|(pending, statement)| async move {
                tx.query(statement, &pending.refs())
                    .await
                    .map_err(IndexError::pg(pending.what.clone()))
            }),
    )
    .await
    .into_iter()
    .collect()
}

/// Writes `changes` and the batch's actor updates, pipelined. Actors and
/// counts come last, so the row locks they take are held only until the
/// commit. `unknown` are the batch's actors whose rows may not be visible
/// yet. Returns false when a concurrent batch created one of the actor rows
/// first and this one must be redone.
pub(super) async fn write_changes<'a>(
    tx: &Transaction<'_>,
    changes: Changes<'a>,
    actors: &BTreeMap<&'a str, ActorUpdate<'a>>,
    unknown: &BTreeSet<&'a str>,
    keys: &Keys,
) -> Result<bool, IndexError> {
    let mut pending = Vec::new();
    records(&changes, &mut pending);
    for (kind, updates) in changes.own_state_updates.values() {
        if let Some(compact) = kind.own_state.as_ref().and_then(|s| s.compact.as_ref()) {
            compact_rows::updates(kind, compact, updates, keys, &mut pending)?;
        } else {
            own_state_rows(kind, updates, &mut pending);
        }
    }
    let judged = judged_replies(&changes.judged);
    let counted = counts(
        &changes,
        judged.as_ref().map(|(uris, _)| uris.clone()),
        keys,
    )?;
    for (table, (kind, uris)) in changes.kind_deletes {
        pending.push(Pending::new(
            kind.delete_sql(),
            format!("deleting from {table}"),
            vec![Box::new(uris)],
        ));
    }
    for (table, inserts) in changes.kind_inserts {
        let mut rows = Unnest::new();
        rows.column("uri", inserts.uris)
            .column("did", inserts.dids)
            .column("rkey", inserts.rkeys)
            .column("cid", inserts.cids);
        push_projected(&mut rows, inserts.columns);
        pending.push(Pending::new(
            inserts.kind.insert_sql(&rows.rows()),
            format!("writing {table}"),
            rows.into_params(),
        ));
    }
    // After the batch's gates, follows, list items and root posts are
    // written, so that a reply sees those that came in the same batch.
    pending.extend(judged.map(|(_, statement)| statement));
    notifications(
        changes.notifications_cleared,
        changes.notifications,
        &mut pending,
    );
    // Count rows of popular posts and actors are shared by concurrent
    // batches: written last, their locks are held only until the commit.
    // Post counters come last of all: a popular post's row is the one
    // concurrent batches wait for.
    let actor_statement = actor_update(actors, unknown, &changes.actor_deltas, &changes.mirrored);
    let actor_result = actor_statement.as_ref().map(|_| pending.len());
    pending.extend(actor_statement);
    pending.extend(counted);
    let results = run_pipelined(tx, &pending).await?;
    // The actor statement counts the rows a concurrent batch created first.
    let lost: i64 = match actor_result
        .and_then(|at| results.get(at))
        .and_then(|rows| rows.first())
    {
        Some(row) => row.col("lost", "updating actors")?,
        None => 0,
    };
    Ok(lost == 0)
}

fn records<'a>(changes: &Changes<'a>, pending: &mut Vec<Pending<'a>>) {
    let updates = &changes.records;
    if updates.is_empty() {
        return;
    }
    let column = |value: fn(&RecordUpdate<'a>) -> Option<&'a str>| {
        updates.iter().map(value).collect::<Vec<_>>()
    };
    let mut rows = Unnest::new();
    rows.column("uri", updates.iter().map(|u| u.uri).collect::<Vec<_>>())
        .column("cid", column(|u| u.cid))
        .column("rev", column(|u| u.rev))
        .column("seq", updates.iter().map(|u| u.seq).collect::<Vec<_>>())
        .column("live", updates.iter().map(|u| u.live).collect::<Vec<_>>())
        .column("subject", column(|u| u.subject))
        .column("quote_subject", column(|u| u.quote_subject))
        .column("record", column(|u| u.record));
    pending.push(Pending::new(
        format!(
            "UPDATE records r SET cid = v.cid, rev = v.rev, seq = v.seq, live = v.live, subject = v.subject, \
               quote_subject = v.quote_subject, record = v.record::jsonb, indexed_at = now() \
             FROM {} \
             WHERE r.uri = v.uri",
            rows.rows()
        ),
        "writing records",
        rows.into_params(),
    ));
}

/// Updates of existing rows of a table that keeps its own state: records
/// that became live or changed get their content, the others become
/// tombstones.
fn own_state_rows<'a>(
    kind: &'static KindTable,
    updates: &[RecordUpdate<'a>],
    pending: &mut Vec<Pending<'a>>,
) {
    let (live, dead): (Vec<&RecordUpdate<'a>>, Vec<&RecordUpdate<'a>>) =
        updates.iter().partition(|u| u.live && u.write.is_some());
    if !live.is_empty() {
        let mut columns: Vec<Vec<Option<&'a str>>> =
            vec![Vec::with_capacity(live.len()); kind.columns.len()];
        for update in &live {
            push_columns(&mut columns, update.write);
        }
        let mut rows = Unnest::new();
        rows.column("uri", live.iter().map(|u| u.uri).collect::<Vec<_>>())
            .column("cid", live.iter().map(|u| u.cid).collect::<Vec<_>>())
            .column("rev", live.iter().map(|u| u.rev).collect::<Vec<_>>())
            .column("seq", live.iter().map(|u| u.seq).collect::<Vec<_>>())
            .column("record", live.iter().map(|u| u.record).collect::<Vec<_>>());
        push_projected(&mut rows, columns);
        pending.push(Pending::new(
            kind.revive_sql(&rows.rows()),
            format!("writing {}", kind.table),
            rows.into_params(),
        ));
    }
    if !dead.is_empty() {
        let mut rows = Unnest::new();
        rows.column("uri", dead.iter().map(|u| u.uri).collect::<Vec<_>>())
            .column("rev", dead.iter().map(|u| u.rev).collect::<Vec<_>>())
            .column("seq", dead.iter().map(|u| u.seq).collect::<Vec<_>>());
        pending.push(Pending::new(
            kind.tombstone_sql(&rows.rows()),
            format!("writing tombstones of {}", kind.table),
            rows.into_params(),
        ));
    }
}

/// The statement that judges the posts given new content (`judged`, see
/// `Changes::judged`) against their thread's gate in one go
/// (`threadgate_violations`, migration 0022): it marks the replies the gate
/// disallows and clears the mark of a rewritten post that had one. With it,
/// the judged uris, whose marked replies [`counts`] takes back.
fn judged_replies<'a>(
    judged: &[(&'a str, &'a str, &'a Write)],
) -> Option<(Vec<&'a str>, Pending<'a>)> {
    if judged.is_empty() {
        return None;
    }
    let uris: Vec<&str> = judged.iter().map(|(uri, _, _)| *uri).collect();
    let dids: Vec<&str> = judged.iter().map(|(_, did, _)| *did).collect();
    let roots: Vec<Option<&str>> = judged
        .iter()
        .map(|(_, _, write)| column(POST, write, "reply_root_uri"))
        .collect();
    let statement = Pending::new(
        "WITH bad AS MATERIALIZED ( \
           SELECT uri FROM threadgate_violations($1::text[], $2::text[], $3::text[])) \
         UPDATE post_rows p SET violates_threadgate = v.bad \
         FROM (SELECT u.uri, u.uri IN (SELECT uri FROM bad) AS bad \
               FROM unnest($1::text[]) AS u(uri)) v \
         WHERE p.uri = v.uri AND p.violates_threadgate <> v.bad",
        "judging replies against threadgates",
        vec![Box::new(uris.clone()), Box::new(dids), Box::new(roots)],
    );
    Some((uris, statement))
}

/// The record counters' deltas, by the counted record's compact key, and
/// the judged replies (`judged`) that their gate disallows, which take back
/// the reply the deltas counted for them: the gate statement has marked
/// them by the time this one runs. A subject that is not a record's URI
/// names nothing a view shows and is not counted.
fn counts<'a>(
    changes: &Changes<'a>,
    judged: Option<Vec<&'a str>>,
    keys: &Keys,
) -> Result<Vec<Pending<'a>>, IndexError> {
    let mut pending = Vec::new();
    let (mut actors, mut collections, mut rkeys) = (Vec::new(), Vec::new(), Vec::new());
    let mut deltas: [Vec<i64>; 4] = Default::default();
    for (uri, delta) in changes.post_deltas.iter().filter(|(_, d)| d.0 != [0; 4]) {
        let Some((actor, collection, rkey)) = keys.counted(uri)? else {
            metrics::counter!("skyhose_index_uncounted_subjects_total").increment(1);
            tracing::debug!(subject = %uri, "not counted: the subject is not a record's uri");
            continue;
        };
        actors.push(actor);
        collections.push(collection);
        rkeys.push(rkey);
        for (column, value) in deltas.iter_mut().zip(delta.0) {
            column.push(value);
        }
    }
    if actors.is_empty() && judged.is_none() {
        return Ok(pending);
    }
    let [likes, reposts, replies, quotes] =
        [LIKES, REPOSTS, REPLIES, QUOTES].map(|field| std::mem::take(&mut deltas[field]));
    let mut rows = Unnest::new();
    rows.column("actor", actors)
        .column("collection", collections)
        .column("rkey", rkeys)
        .column("likes", likes)
        .column("reposts", reposts)
        .column("replies", replies)
        .column("quotes", quotes);
    let names: Vec<&str> = rows.names().collect();
    let source = match &judged {
        None => rows.rows(),
        Some(_) => {
            let sums: Vec<String> = names
                .iter()
                .skip(COUNTED_KEY.len())
                .map(|c| format!("sum({c})::int8"))
                .collect();
            format!(
                "(SELECT actor, collection, rkey, {sums} FROM ( \
                    SELECT * FROM {rows} \
                    UNION ALL \
                    SELECT ref_actor(p.reply_parent_uri), ref_collection(p.reply_parent_uri), \
                           ref_rkey(p.reply_parent_uri), 0, 0, -1, 0 FROM post_rows p \
                    WHERE p.uri = ANY(${judged}::text[]) AND p.violates_threadgate \
                      AND uri_authority(p.reply_parent_uri) IS NOT NULL) x \
                  GROUP BY actor, collection, rkey HAVING {nonzero}) AS v({names})",
                sums = sums.join(", "),
                rows = rows.rows(),
                judged = names.len() + 1,
                nonzero = sums
                    .iter()
                    .map(|sum| format!("{sum} <> 0"))
                    .collect::<Vec<_>>()
                    .join(" OR "),
                names = names.join(", "),
            )
        }
    };
    let sql = add_counts_sql(&source, &names);
    let mut params = rows.into_params();
    if let Some(judged) = judged {
        params.push(Box::new(judged));
    }
    pending.push(Pending::new(sql, "updating post counts", params));
    Ok(pending)
}

/// The key of `post_counts`: the counted record's compact reference.
const COUNTED_KEY: [&str; 3] = ["actor", "collection", "rkey"];

/// Adds per-record deltas to `post_counts`. Rows that exist are updated in
/// place; only missing keys go through an upsert, because `ON CONFLICT DO
/// UPDATE` pays an extra index probe and a row lock (with its WAL record)
/// for every row, and nearly every counter row exists. Keys are taken in
/// sorted order both times, so concurrent batches lock shared rows in the
/// same order. `rows` is a FROM item `v` whose columns are `names`: the key
/// ([`COUNTED_KEY`]), then the counters' deltas.
fn add_counts_sql(rows: &str, names: &[&str]) -> String {
    let counters: Vec<&str> = names.iter().skip(COUNTED_KEY.len()).copied().collect();
    let add = |source: &str| {
        counters
            .iter()
            .map(|c| format!("{c} = t.{c} + {source}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key = COUNTED_KEY.join(", ");
    format!(
        "WITH v AS (SELECT * FROM {rows} ORDER BY 1, 2, 3), \
         updated AS (UPDATE post_counts t SET {from_v} FROM v \
             WHERE {matches} RETURNING {t_key}) \
         INSERT INTO post_counts AS t ({key}, {columns}) \
         SELECT * FROM v WHERE ({v_key}) NOT IN (SELECT {key} FROM updated) ORDER BY 1, 2, 3 \
         ON CONFLICT ({key}) DO UPDATE SET {from_excluded}",
        columns = counters.join(", "),
        from_v = add("v"),
        from_excluded = add("excluded"),
        matches = COUNTED_KEY
            .iter()
            .map(|k| format!("t.{k} = v.{k}"))
            .collect::<Vec<_>>()
            .join(" AND "),
        t_key = COUNTED_KEY.map(|k| format!("t.{k}")).join(", "),
        v_key = COUNTED_KEY.map(|k| format!("v.{k}")).join(", "),
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
        let mut columns = Unnest::new();
        columns
            .column("recipient_did", rows.recipients)
            .column("reason", rows.reasons)
            .column("reason_subject", rows.reason_subjects)
            .column("record_uri", rows.record_uris)
            .column("seq", rows.seqs);
        let names: Vec<&str> = columns.names().collect();
        pending.push(Pending::new(
            format!(
                "INSERT INTO notifications ({names}) SELECT * FROM {rows}",
                names = names.join(", "),
                rows = columns.rows()
            ),
            "inserting notifications",
            columns.into_params(),
        ));
    }
    let posts = rows.posts;
    if !posts.uris.is_empty() {
        let mut columns = Unnest::new();
        columns
            .column("author_did", posts.authors)
            .column("record_uri", posts.uris)
            .column("seq", posts.seqs)
            .column("parent", posts.parents)
            .column("root", posts.roots)
            .column("came_live", posts.new);
        pending.push(Pending::new(
            format!(
                // `below`: replies the index already holds under a post
                // that became live in the batch (written before it), each
                // `height` below it; those the batch writes walk up on
                // their own.
                // `reply`: every reply to notify of, with the first post
                // above it to walk up from and that post's height, and for
                // a reply written now the replies its root's threadgate
                // hides: the walk notifies such a post's author and ends
                // there, as the official AppView's does (not for replies
                // met below a post that came live, as there).
                // The recursive terms' row estimates grow by ten at every
                // level, which makes hash joins over whole tables look
                // cheap: each step is a lateral subquery that is never
                // flattened (`OFFSET 0`), so every step is an index probe,
                // and the checks of the final rows are subplans probing
                // their indexes.
                "WITH RECURSIVE v AS (SELECT * FROM {rows}), \
                 below(record_uri, author_did, seq, start, height, hidden) AS ( \
                   SELECT p.uri, p.did, COALESCE(p.seq, v.seq), v.record_uri, 1, NULL::jsonb \
                   FROM v CROSS JOIN LATERAL (SELECT p.uri, p.did, p.seq FROM post_rows p \
                     WHERE p.reply_parent_uri = v.record_uri AND p.live OFFSET 0) p \
                   WHERE v.came_live \
                   UNION ALL \
                   SELECT p.uri, p.did, COALESCE(p.seq, b.seq), b.start, b.height + 1, NULL::jsonb \
                   FROM below b CROSS JOIN LATERAL (SELECT p.uri, p.did, p.seq FROM post_rows p \
                     WHERE p.reply_parent_uri = b.record_uri AND p.live OFFSET 0) p \
                   WHERE b.height < {max}), \
                 reply AS ( \
                   SELECT v.record_uri, v.author_did, v.seq, v.parent AS start, 1 AS height, \
                          (SELECT g.hidden_replies FROM threadgates g \
                           WHERE g.uri = 'at://' || split_part(v.root, '/', 3) \
                             || '/app.bsky.feed.threadgate/' || split_part(v.root, '/', 5) \
                             AND jsonb_typeof(g.hidden_replies) = 'array') AS hidden \
                   FROM v WHERE v.parent IS NOT NULL \
                   UNION ALL SELECT * FROM below b \
                   WHERE NOT EXISTS (SELECT 1 FROM v WHERE v.record_uri = b.record_uri)), \
                 up(record_uri, author_did, seq, uri, did, parent, height, hidden) AS ( \
                   SELECT r.record_uri, r.author_did, r.seq, p.uri, p.did, \
                          p.reply_parent_uri, r.height, r.hidden \
                   FROM reply r CROSS JOIN LATERAL (SELECT p.uri, p.did, p.reply_parent_uri \
                     FROM posts p WHERE p.uri = r.start OFFSET 0) p \
                   UNION ALL \
                   SELECT up.record_uri, up.author_did, up.seq, p.uri, p.did, \
                          p.reply_parent_uri, up.height + 1, up.hidden \
                   FROM up CROSS JOIN LATERAL (SELECT p.uri, p.did, p.reply_parent_uri \
                     FROM posts p WHERE p.uri = up.parent OFFSET 0) p \
                   WHERE up.height < {max} AND (up.hidden IS NULL OR NOT up.hidden ? up.uri)) \
                 INSERT INTO notifications (recipient_did, reason, reason_subject, record_uri, seq) \
                 SELECT DISTINCT ON (up.record_uri, up.did) up.did, 'reply', up.uri, \
                        up.record_uri, up.seq \
                 FROM up \
                 WHERE up.did <> up.author_did \
                   AND (SELECT NOT EXISTS (SELECT 1 FROM post_rows p \
                          WHERE p.uri = up.record_uri AND p.violates_threadgate) \
                        AND NOT EXISTS (SELECT 1 FROM notifications n \
                          WHERE n.record_uri = up.record_uri AND n.recipient_did = up.did)) \
                 ORDER BY up.record_uri, up.did, up.height",
                rows = columns.rows(),
                max = REPLY_NOTIFIED_HEIGHT,
            ),
            "notifying the authors above replies",
            columns.into_params(),
        ));
    }
}

/// How far above a reply its ancestors' authors are notified of it, as the
/// official AppView notifies them: from the parent (height 1) up to the
/// fourth post above, each author once (of the nearest of their posts), and
/// only through posts the index holds. A post indexed after replies to it
/// (a backfill's order, say) notifies of those replies what their own
/// writing could not. A reply its thread's gate disallows notifies none of
/// them; above a reply the root's threadgate hides, none is notified (its
/// author is); an account already notified of the post (mentioned, or
/// quoted) is not notified again.
const REPLY_NOTIFIED_HEIGHT: i32 = 4;

/// Actor columns copied from the profile record's projection row, beside
/// the name of that row's column.
const PROFILE_FIELDS: [(&str, &str); 7] = [
    ("display_name", "display_name"),
    ("description", "description"),
    ("avatar_cid", "avatar_cid"),
    ("banner_cid", "banner_cid"),
    ("pinned_post_uri", "pinned_post_uri"),
    ("pinned_post_cid", "pinned_post_cid"),
    ("profile_created_at", "created_at"),
];

/// The counters of an actor row, in the order of the `ActorDelta` fields.
const ACTOR_COUNTERS: [&str; 7] = [
    "followers",
    "follows",
    "posts",
    "lists",
    "feedgens",
    "starter_packs",
    "labelers",
];

/// One statement writes each actor row the batch changes once, in did
/// order: handle and status follow the newest event that set them, progress
/// the newest commit, counters add the batch's deltas, and the profile and
/// chat declaration fields take the state the batch left those records in.
/// An author with nothing else to change (`changed` false) is only made
/// visible, if its row is not yet. Existing rows (nearly all) are updated in
/// place; only rows missing at the start are inserted. The one value
/// returned counts those a concurrent batch created meanwhile, which makes
/// the caller redo the batch. `rows` are [`ActorRows::into_rows`].
fn actor_sql(rows: &Unnest<'_>) -> String {
    let profile_columns: Vec<&str> = PROFILE_FIELDS.iter().map(|(column, _)| *column).collect();
    let counters = ACTOR_COUNTERS.join(", ");
    let add_counters = ACTOR_COUNTERS
        .iter()
        .map(|c| format!("{c} = a.{c} + v.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let set_profile = profile_columns
        .iter()
        .map(|c| format!("{c} = CASE WHEN v.profile_set THEN v.{c} ELSE a.{c} END"))
        .collect::<Vec<_>>()
        .join(", ");
    let profile_values = profile_columns
        .iter()
        .map(|c| format!("v.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let counter_values = ACTOR_COUNTERS
        .iter()
        .map(|c| format!("v.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH v AS ( \
           SELECT * FROM {rows} \
           ORDER BY v.did), \
         updated AS ( \
           UPDATE actors a SET \
             handle = CASE WHEN v.handle IS NOT NULL AND a.handle_verified IS NULL \
                            AND (a.handle_seq IS NULL OR a.handle_seq < v.handle_seq) \
                           THEN v.handle ELSE a.handle END, \
             handle_seq = GREATEST(a.handle_seq, v.handle_seq), \
             identity_due_at = CASE WHEN (v.handle_seq IS NOT NULL \
                                          AND (a.handle_seq IS NULL OR a.handle_seq < v.handle_seq)) \
                                         OR (v.author AND NOT a.indexed) \
                                         OR (v.status = 'active' AND a.status = 'takendown' \
                                             AND v.status_seq IS NOT NULL \
                                             AND (a.status_seq IS NULL OR a.status_seq < v.status_seq)) \
                                    THEN now() ELSE a.identity_due_at END, \
             status = CASE WHEN v.status_seq IS NOT NULL \
                            AND (a.status_seq IS NULL OR a.status_seq < v.status_seq) \
                           THEN v.status ELSE a.status END, \
             status_seq = GREATEST(a.status_seq, v.status_seq), \
             deleted_seq = GREATEST(a.deleted_seq, v.deleted_seq), \
             last_rev = CASE WHEN v.last_seq IS NOT NULL \
                              AND (a.last_seq IS NULL OR a.last_seq < v.last_seq) \
                             THEN v.last_rev ELSE a.last_rev END, \
             last_seq = GREATEST(a.last_seq, v.last_seq), \
             indexed = a.indexed OR v.author, \
             {add_counters}, {set_profile}, \
             profile_indexed_at = CASE WHEN v.profile_set THEN CASE WHEN v.profile_live THEN now() END \
                                       ELSE a.profile_indexed_at END, \
             chat_allow_incoming = CASE WHEN v.chat_set THEN v.chat_allow_incoming \
                                        ELSE a.chat_allow_incoming END \
           FROM v WHERE a.did = v.did AND (v.changed OR NOT a.indexed)), \
         missing AS (SELECT * FROM v WHERE NOT EXISTS (SELECT 1 FROM actors x WHERE x.did = v.did)), \
         inserted AS ( \
           INSERT INTO actors AS a (did, handle, handle_seq, status, status_seq, deleted_seq, last_seq, \
                                    last_rev, indexed, {counters}, {profile_list}, profile_indexed_at, \
                                    chat_allow_incoming, identity_due_at) \
           SELECT v.did, v.handle, v.handle_seq, COALESCE(v.status, 'active'), v.status_seq, v.deleted_seq, \
                  v.last_seq, v.last_rev, v.author, {counter_values}, {profile_values}, \
                  CASE WHEN v.profile_live THEN now() END, v.chat_allow_incoming, \
                  CASE WHEN v.author THEN now() END \
           FROM missing v ORDER BY v.did \
           ON CONFLICT (did) DO NOTHING \
           RETURNING a.did) \
         SELECT (SELECT count(*) FROM missing) - (SELECT count(*) FROM inserted) AS lost",
        rows = rows.rows(),
        profile_list = profile_columns.join(", "),
    )
}

/// One actor row's changes, a vector per column of [`actor_sql`].
#[derive(Default)]
struct ActorRows<'a> {
    dids: Vec<&'a str>,
    handle_seqs: Vec<Option<i64>>,
    handles: Vec<Option<&'a str>>,
    status_seqs: Vec<Option<i64>>,
    statuses: Vec<Option<&'a str>>,
    deleted_seqs: Vec<Option<i64>>,
    progress_seqs: Vec<Option<i64>>,
    progress_revs: Vec<Option<&'a str>>,
    authors: Vec<bool>,
    counters: [Vec<i64>; 7],
    profile_set: Vec<bool>,
    profile_live: Vec<bool>,
    profile: [Vec<Option<&'a str>>; 7],
    chat_set: Vec<bool>,
    chat_allow_incoming: Vec<Option<&'a str>>,
    changed: Vec<bool>,
}

/// Every actor row the batch changes: its own actors (authors of its
/// events) whose handle, status or progress it sets or whose rows may not
/// be visible yet (`unknown`), the actors whose counters moved and those
/// whose profile or chat declaration changed; `None` when there is none.
fn actor_update<'a>(
    updates: &BTreeMap<&'a str, ActorUpdate<'a>>,
    unknown: &BTreeSet<&'a str>,
    deltas: &'a BTreeMap<String, ActorDelta>,
    mirrored: &BTreeMap<&'a str, MirroredRecords<'a>>,
) -> Option<Pending<'a>> {
    let none = ActorUpdate::default();
    let no_delta = ActorDelta::default();
    let no_records = MirroredRecords::default();
    let changed: BTreeSet<&'a str> = updates
        .iter()
        .filter(|(_, update)| update.changes_row())
        .map(|(did, _)| *did)
        .chain(
            deltas
                .iter()
                .filter(|(_, d)| d.0 != [0; 7])
                .map(|(did, _)| did.as_str()),
        )
        .chain(mirrored.keys().copied())
        .collect();
    let dids: BTreeSet<&'a str> = changed.iter().chain(unknown).copied().collect();
    if dids.is_empty() {
        return None;
    }
    let mut rows = ActorRows::default();
    for did in &dids {
        rows.changed.push(changed.contains(did));
        let update = updates.get(did).unwrap_or(&none);
        rows.dids.push(did);
        rows.handle_seqs.push(update.handle.map(|(seq, _)| seq));
        rows.handles
            .push(update.handle.and_then(|(_, handle)| handle));
        rows.status_seqs.push(update.status.map(|(seq, _)| seq));
        rows.statuses.push(update.status.map(|(_, status)| status));
        rows.deleted_seqs.push(update.deleted_seq);
        rows.progress_seqs.push(update.progress.map(|(seq, _)| seq));
        rows.progress_revs
            .push(update.progress.and_then(|(_, rev)| rev));
        rows.authors.push(updates.contains_key(did));
        let delta = deltas.get(*did).unwrap_or(&no_delta);
        for (column, value) in rows.counters.iter_mut().zip(delta.0) {
            column.push(value);
        }
        let records = mirrored.get(did).unwrap_or(&no_records);
        let profile = records.profile.flatten();
        rows.profile_set.push(records.profile.is_some());
        rows.profile_live.push(profile.is_some());
        for (values, (_, name)) in rows.profile.iter_mut().zip(PROFILE_FIELDS) {
            values.push(profile.and_then(|write| column(PROFILE, write, name)));
        }
        rows.chat_set.push(records.chat_declaration.is_some());
        rows.chat_allow_incoming.push(
            records
                .chat_declaration
                .flatten()
                .and_then(|write| column(CHAT_DECLARATION, write, "allow_incoming")),
        );
    }
    let rows = rows.into_rows();
    Some(Pending::new(
        actor_sql(&rows),
        "updating actors",
        rows.into_params(),
    ))
}

impl<'a> ActorRows<'a> {
    fn into_rows(self) -> Unnest<'a> {
        let mut rows = Unnest::new();
        rows.column("did", self.dids)
            .column("handle_seq", self.handle_seqs)
            .column("handle", self.handles)
            .column("status_seq", self.status_seqs)
            .column("status", self.statuses)
            .column("deleted_seq", self.deleted_seqs)
            .column("last_seq", self.progress_seqs)
            .column("last_rev", self.progress_revs)
            .column("author", self.authors);
        for (name, values) in ACTOR_COUNTERS.into_iter().zip(self.counters) {
            rows.column(name, values);
        }
        rows.column("profile_set", self.profile_set)
            .column("profile_live", self.profile_live);
        for ((name, _), values) in PROFILE_FIELDS.into_iter().zip(self.profile) {
            rows.column(name, values);
        }
        rows.column("chat_set", self.chat_set)
            .column("chat_allow_incoming", self.chat_allow_incoming)
            .column("changed", self.changed);
        rows
    }
}
