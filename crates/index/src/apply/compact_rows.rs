//! The statements of the compact tables (likes and reposts, migration
//! 0021; follows, migration 0023): the same steps as every table that keeps
//! its own state (lock or insert, read the locked state, revive, tombstone),
//! keyed by (actor id, record key) instead of by uri, with references and
//! CIDs in their compact form as the table's [`Layout`] says. The batch's
//! plan stays keyed by uri; the ids come from [`Keys`].

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::Row;

use super::keys::Keys;
use super::plan::{Candidate, RecordUpdate, Stored, Touched};
use super::unnest::Unnest;
use super::write::Pending;
use crate::compact::{cid_bytes, stored_time, Compact, Layout, Target};
use crate::db::RowExt;
use crate::entry::Write;
use crate::error::IndexError;
use crate::kinds::KindTable;

/// The state columns written with a record's content, after its identity;
/// the layout's reference columns and `created_at` follow.
const STATE: [&str; 6] = ["cid", "cid_string", "rev", "seq", "live", "record"];

/// The columns written with a record's content, in order.
fn content(layout: &Layout) -> Vec<String> {
    STATE
        .iter()
        .map(|name| (*name).to_owned())
        .chain(layout.refs.iter().flat_map(|r| r.columns()))
        .chain(["created_at".to_owned()])
        .collect()
}

/// The uris of one table's rows by their stored identity, to read the
/// statements' results back into the plan's terms.
pub(super) type ByKey<'a> = HashMap<(i32, i64), &'a str>;

/// One column vector per stored column, for a set of rows.
struct Rows<'a> {
    layout: &'static Layout,
    actor: Vec<i32>,
    rkey: Vec<i64>,
    cid: Vec<Option<Vec<u8>>>,
    cid_string: Vec<Option<&'a str>>,
    rev: Vec<Option<&'a str>>,
    seq: Vec<Option<i64>>,
    live: Vec<bool>,
    record: Vec<Option<&'a str>>,
    /// One per reference of the layout, in its order.
    refs: Vec<References>,
    /// Microseconds since the epoch (`stored_time`).
    created_at: Vec<Option<i64>>,
}

#[derive(Default)]
struct References {
    actor: Vec<Option<i32>>,
    collection: Vec<Option<i16>>,
    rkey: Vec<Option<i64>>,
    cid: Vec<Option<Vec<u8>>>,
}

impl References {
    /// Appends a reference given by the projected `columns` of a write (or
    /// none); false when it is present but has no compact form, so the
    /// record must keep its text.
    fn push<'a>(
        &mut self,
        keys: &Keys,
        target: Target,
        column: impl Fn(usize) -> Option<&'a str>,
    ) -> Result<bool, IndexError> {
        match target {
            Target::Record { uri, cid } => {
                let (uri, cid) = (column(uri), column(cid));
                let key = keys.reference(uri);
                let cid_bytes = cid.and_then(cid_bytes);
                let complete =
                    (uri.is_none() || key.is_some()) && (cid.is_none() || cid_bytes.is_some());
                self.actor.push(key.map(|k| k.0));
                self.collection.push(key.map(|k| k.1));
                self.rkey.push(key.map(|k| k.2));
                self.cid.push(cid_bytes);
                Ok(complete)
            }
            Target::Account { did } => {
                // Every account text was given an id before the transaction.
                let actor = column(did)
                    .map(|did| {
                        keys.did(did).ok_or_else(|| {
                            IndexError::Keys(format!("no id for the referenced account {did:?}"))
                        })
                    })
                    .transpose()?;
                self.actor.push(actor);
                Ok(true)
            }
        }
    }
}

impl<'a> Rows<'a> {
    fn new(layout: &'static Layout) -> Self {
        Rows {
            layout,
            actor: Vec::new(),
            rkey: Vec::new(),
            cid: Vec::new(),
            cid_string: Vec::new(),
            rev: Vec::new(),
            seq: Vec::new(),
            live: Vec::new(),
            record: Vec::new(),
            refs: layout.refs.iter().map(|_| References::default()).collect(),
            created_at: Vec::new(),
        }
    }

    fn identity(&mut self, key: (i32, i64)) -> (i32, i64) {
        self.actor.push(key.0);
        self.rkey.push(key.1);
        key
    }

    /// Appends a row's state and, when live, its content.
    fn content(
        &mut self,
        keys: &Keys,
        write: Option<&'a Write>,
        rev: Option<&'a str>,
        seq: Option<i64>,
    ) -> Result<(), IndexError> {
        let column = |index: usize| write.and_then(|w| w.columns.get(index)?.as_deref());
        // A CID the views derive is not stored.
        let cid = write
            .filter(|w| !w.derived_cid)
            .map(|w| (w.cid.as_str(), cid_bytes(&w.cid)));
        self.cid_string.push(
            cid.as_ref()
                .and_then(|(text, bytes)| bytes.is_none().then_some(*text)),
        );
        self.cid.push(cid.and_then(|(_, bytes)| bytes));
        self.rev.push(rev);
        self.seq.push(seq);
        self.live.push(write.is_some());
        let mut complete = true;
        for (references, reference) in self.refs.iter_mut().zip(self.layout.refs) {
            complete &= references.push(keys, reference.target, column)?;
        }
        // The views read a value without a compact form from the text, so
        // the text stays whenever one is missing, rebuilt or not.
        self.record.push(write.and_then(|w| {
            if complete {
                w.stored_json()
            } else {
                Some(w.json.as_str())
            }
        }));
        self.created_at
            .push(column(self.layout.created_at).and_then(stored_time));
        Ok(())
    }

    fn into_unnest(self) -> Unnest<'a> {
        let mut rows = Unnest::new();
        rows.column("actor", self.actor)
            .column("rkey", self.rkey)
            .column("cid", self.cid)
            .column("cid_string", self.cid_string)
            .column("rev", self.rev)
            .column("seq", self.seq)
            .column("live", self.live)
            .column("record", self.record);
        // Named as `Ref::columns` names them.
        for (references, reference) in self.refs.into_iter().zip(self.layout.refs) {
            let name = reference.name;
            rows.column(format!("{name}_actor"), references.actor);
            if let Target::Record { .. } = reference.target {
                rows.column(format!("{name}_collection"), references.collection)
                    .column(format!("{name}_rkey"), references.rkey)
                    .column(format!("{name}_cid"), references.cid);
            }
        }
        rows.column("created_at", self.created_at);
        rows
    }
}

/// The values of [`content`] read from the rows `v`.
fn values(layout: &Layout) -> Vec<String> {
    content(layout)
        .into_iter()
        .map(|name| match name.as_str() {
            "record" => "v.record::json".to_owned(),
            "created_at" => {
                "'epoch'::timestamptz + v.created_at * interval '1 microsecond'".to_owned()
            }
            _ => format!("v.{name}"),
        })
        .collect()
}

/// Inserts the rows of records `kind`'s table (kept as `compact` says)
/// has never seen, with their final state, and locks the existing ones, in
/// key order (see `write::lock_records`). Returns the statement and the
/// uris by key.
pub(super) fn lock<'a>(
    kind: &'static KindTable,
    compact: &'static Compact,
    uris: &[&'a str],
    touched: &Touched<'a>,
    candidates: &'a BTreeMap<&str, Candidate<'a>>,
    keys: &Keys,
) -> Result<(Pending<'a>, ByKey<'a>), IndexError> {
    let mut rows = Rows::new(compact.layout);
    let mut by_key = HashMap::with_capacity(uris.len());
    for uri in uris {
        let (did, _, rkey) = touched[uri];
        by_key.insert(rows.identity(keys.record(uri, did, rkey)?), *uri);
        let candidate = candidates.get(uri);
        rows.content(
            keys,
            candidate.and_then(|c| c.write),
            candidate.and_then(|c| c.key.rev),
            candidate.map(|c| c.key.seq),
        )?;
    }
    let rows = rows.into_unnest();
    let sql = format!(
        "INSERT INTO {table} AS t (actor, rkey, {names}) \
         SELECT v.actor, v.rkey, {values} FROM {rows} \
         ORDER BY v.actor, v.rkey \
         ON CONFLICT (actor, rkey) DO UPDATE SET live = t.live WHERE false \
         RETURNING t.actor, t.rkey",
        table = kind.table,
        names = content(compact.layout).join(", "),
        values = values(compact.layout).join(", "),
        rows = rows.rows(),
    );
    Ok((
        Pending::new(
            sql,
            format!("inserting and locking {}", kind.table),
            rows.into_params(),
        ),
        by_key,
    ))
}

/// The uri of a row a statement returned by its key.
pub(super) fn uri_of<'a>(row: &Row, by_key: &ByKey<'a>, what: &str) -> Result<&'a str, IndexError> {
    let key = (row.col("actor", what)?, row.col("rkey", what)?);
    by_key
        .get(&key)
        .copied()
        .ok_or_else(|| IndexError::Keys(format!("{what}: a row {key:?} the batch did not touch")))
}

/// Reads the locked state of the rows `uris` of `kind`'s table, with its
/// subject (the layout's first reference) as text, through the table's
/// state view, the one place that renders a row's references.
pub(super) fn read<'a>(
    compact: &'static Compact,
    uris: &[&'a str],
    touched: &Touched<'a>,
    keys: &Keys,
) -> Result<(Pending<'a>, ByKey<'a>), IndexError> {
    let mut actors = Vec::with_capacity(uris.len());
    let mut rkeys = Vec::with_capacity(uris.len());
    let mut by_key = HashMap::with_capacity(uris.len());
    for uri in uris {
        let (did, _, rkey) = touched[uri];
        let key = keys.record(uri, did, rkey)?;
        actors.push(key.0);
        rkeys.push(key.1);
        by_key.insert(key, *uri);
    }
    let subject = compact.layout.refs.first().map_or_else(
        || "NULL::text".to_owned(),
        |r| format!("s.{}", r.view_column()),
    );
    let mut rows = Unnest::new();
    rows.column("actor", actors).column("rkey", rkeys);
    let sql = format!(
        "SELECT s.actor, s.rkey_id AS rkey, s.live, s.rev, s.seq, {subject} AS subject \
         FROM {view} s JOIN {rows} ON s.actor = v.actor AND s.rkey_id = v.rkey",
        view = compact.state_view,
        rows = rows.rows(),
    );
    Ok((
        Pending::new(sql, "reading locked records", rows.into_params()),
        by_key,
    ))
}

/// A row of [`read`] as the plan sees it.
pub(super) fn stored(row: &Row, kind: &KindTable, did: &str) -> Result<Stored, IndexError> {
    const READING: &str = "reading locked records";
    Ok(Stored {
        did: did.to_owned(),
        collection: kind.collection.to_owned(),
        live: row.col("live", READING)?,
        rev: row.col("rev", READING)?,
        seq: row.col("seq", READING)?,
        subject: row.col("subject", READING)?,
        quote_subject: None,
        violates_threadgate: false,
    })
}

/// Updates of existing rows: records that became live or changed get
/// their content, the others become tombstones (keeping their references,
/// so that the row's indexed columns stay as they were).
pub(super) fn updates<'a>(
    kind: &'static KindTable,
    compact: &'static Compact,
    updates: &[RecordUpdate<'a>],
    keys: &Keys,
    pending: &mut Vec<Pending<'a>>,
) -> Result<(), IndexError> {
    let (live, dead): (Vec<&RecordUpdate<'a>>, Vec<&RecordUpdate<'a>>) =
        updates.iter().partition(|u| u.live && u.write.is_some());
    if !live.is_empty() {
        let mut rows = Rows::new(compact.layout);
        for update in &live {
            rows.identity(keys.record_at(update.uri)?);
            rows.content(keys, update.write, update.rev, update.seq)?;
        }
        let set: Vec<String> = content(compact.layout)
            .iter()
            .zip(values(compact.layout))
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        let rows = rows.into_unnest();
        pending.push(Pending::new(
            format!(
                "UPDATE {table} AS t SET {set}, indexed_at = now() \
                 FROM {rows} WHERE t.actor = v.actor AND t.rkey = v.rkey",
                table = kind.table,
                set = set.join(", "),
                rows = rows.rows(),
            ),
            format!("writing {}", kind.table),
            rows.into_params(),
        ));
    }
    if !dead.is_empty() {
        let mut actors = Vec::with_capacity(dead.len());
        let mut rkeys = Vec::with_capacity(dead.len());
        for update in &dead {
            let (actor, rkey) = keys.record_at(update.uri)?;
            actors.push(actor);
            rkeys.push(rkey);
        }
        let mut rows = Unnest::new();
        rows.column("actor", actors)
            .column("rkey", rkeys)
            .column("rev", dead.iter().map(|u| u.rev).collect::<Vec<_>>())
            .column("seq", dead.iter().map(|u| u.seq).collect::<Vec<_>>());
        pending.push(Pending::new(
            format!(
                "UPDATE {table} AS t SET rev = v.rev, seq = v.seq, live = false, cid = NULL, \
                 cid_string = NULL, record = NULL \
                 FROM {rows} WHERE t.actor = v.actor AND t.rkey = v.rkey",
                table = kind.table,
                rows = rows.rows(),
            ),
            format!("writing tombstones of {}", kind.table),
            rows.into_params(),
        ));
    }
    Ok(())
}
