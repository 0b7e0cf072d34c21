//! The statements of the compact like and repost tables (migration 0021):
//! the same steps as every table that keeps its own state (lock or insert,
//! read the locked state, revive, tombstone), keyed by (actor id, record
//! key) instead of by uri, with references and CIDs in their compact form.
//! The batch's plan stays keyed by uri; the ids come from [`Keys`].

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::Row;

use super::keys::Keys;
use super::plan::{Candidate, RecordUpdate, Stored, Touched};
use super::unnest::Unnest;
use super::write::Pending;
use crate::compact::{cid_bytes, CREATED_AT, SUBJECT_CID, SUBJECT_URI, VIA_CID, VIA_URI};
use crate::db::RowExt;
use crate::entry::Write;
use crate::error::IndexError;
use crate::kinds::KindTable;

/// The columns written with a record's content, after its identity.
const CONTENT: [&str; 15] = [
    "cid",
    "cid_string",
    "rev",
    "seq",
    "live",
    "record",
    "subject_actor",
    "subject_collection",
    "subject_rkey",
    "subject_cid",
    "via_actor",
    "via_collection",
    "via_rkey",
    "via_cid",
    "created_at",
];

/// The uris of one table's rows by their stored identity, to read the
/// statements' results back into the plan's terms.
pub(super) type ByKey<'a> = HashMap<(i32, i64), &'a str>;

/// One column vector per stored column, for a set of rows.
#[derive(Default)]
struct Rows<'a> {
    actor: Vec<i32>,
    rkey: Vec<i64>,
    cid: Vec<Option<Vec<u8>>>,
    cid_string: Vec<Option<&'a str>>,
    rev: Vec<Option<&'a str>>,
    seq: Vec<Option<i64>>,
    live: Vec<bool>,
    record: Vec<Option<&'a str>>,
    subject: References,
    via: References,
    created_at: Vec<Option<&'a str>>,
}

#[derive(Default)]
struct References {
    actor: Vec<Option<i32>>,
    collection: Vec<Option<i16>>,
    rkey: Vec<Option<i64>>,
    cid: Vec<Option<Vec<u8>>>,
}

impl References {
    /// Appends a reference; false when it is present but has no compact
    /// form, so the record must keep its text.
    fn push(&mut self, keys: &Keys, uri: Option<&str>, cid: Option<&str>) -> bool {
        let key = keys.reference(uri);
        let cid_bytes = cid.and_then(cid_bytes);
        let complete = (uri.is_none() || key.is_some()) && (cid.is_none() || cid_bytes.is_some());
        self.actor.push(key.map(|k| k.0));
        self.collection.push(key.map(|k| k.1));
        self.rkey.push(key.map(|k| k.2));
        self.cid.push(cid_bytes);
        complete
    }
}

impl<'a> Rows<'a> {
    fn identity(&mut self, keys: &Keys, did: &str, rkey: &str) -> Result<(i32, i64), IndexError> {
        let key = keys.record(did, rkey).ok_or_else(|| {
            IndexError::Keys(format!("no id for the record key of at://{did}/…/{rkey}"))
        })?;
        self.actor.push(key.0);
        self.rkey.push(key.1);
        Ok(key)
    }

    /// Appends a row's state and, when live, its content.
    fn content(
        &mut self,
        keys: &Keys,
        write: Option<&'a Write>,
        rev: Option<&'a str>,
        seq: Option<i64>,
    ) {
        let column = |index: usize| write.and_then(|w| w.columns.get(index)?.as_deref());
        let cid = write.map(|w| (w.cid.as_str(), cid_bytes(&w.cid)));
        self.cid_string.push(
            cid.as_ref()
                .and_then(|(text, bytes)| bytes.is_none().then_some(*text)),
        );
        self.cid.push(cid.and_then(|(_, bytes)| bytes));
        self.rev.push(rev);
        self.seq.push(seq);
        self.live.push(write.is_some());
        let subject = self
            .subject
            .push(keys, column(SUBJECT_URI), column(SUBJECT_CID));
        let via = self.via.push(keys, column(VIA_URI), column(VIA_CID));
        // The views read a value without a compact form from the text, so
        // the text stays whenever one is missing, rebuilt or not.
        self.record.push(write.and_then(|w| {
            if subject && via {
                w.stored_json()
            } else {
                Some(w.json.as_str())
            }
        }));
        self.created_at.push(column(CREATED_AT));
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
            .column("record", self.record)
            .column("subject_actor", self.subject.actor)
            .column("subject_collection", self.subject.collection)
            .column("subject_rkey", self.subject.rkey)
            .column("subject_cid", self.subject.cid)
            .column("via_actor", self.via.actor)
            .column("via_collection", self.via.collection)
            .column("via_rkey", self.via.rkey)
            .column("via_cid", self.via.cid)
            .column("created_at", self.created_at);
        rows
    }
}

/// The value a statement writes into the content column `name`.
fn value(name: &str) -> String {
    match name {
        "record" => "v.record::json".to_owned(),
        other => format!("v.{other}"),
    }
}

/// Inserts the rows of records `kind`'s table has never seen, with their
/// final state, and locks the existing ones, in key order (see
/// `write::lock_records`). Returns the statement and the uris by key.
pub(super) fn lock<'a>(
    kind: &'static KindTable,
    uris: &[&'a str],
    touched: &Touched<'a>,
    candidates: &'a BTreeMap<&str, Candidate<'a>>,
    keys: &Keys,
) -> Result<(Pending<'a>, ByKey<'a>), IndexError> {
    let mut rows = Rows::default();
    let mut by_key = HashMap::with_capacity(uris.len());
    for uri in uris {
        let (did, _, rkey) = touched[uri];
        by_key.insert(rows.identity(keys, did, rkey)?, *uri);
        let candidate = candidates.get(uri);
        rows.content(
            keys,
            candidate.and_then(|c| c.write),
            candidate.and_then(|c| c.key.rev),
            candidate.map(|c| c.key.seq),
        );
    }
    let rows = rows.into_unnest();
    let sql = format!(
        "INSERT INTO {table} AS t (actor, rkey, {names}) \
         SELECT v.actor, v.rkey, {values} FROM {rows} \
         ORDER BY v.actor, v.rkey \
         ON CONFLICT (actor, rkey) DO UPDATE SET live = t.live WHERE false \
         RETURNING t.actor, t.rkey",
        table = kind.table,
        names = CONTENT.join(", "),
        values = CONTENT.map(value).join(", "),
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

/// Reads the locked state of the rows `uris` of `kind`'s table.
pub(super) fn read<'a>(
    kind: &'static KindTable,
    uris: &[&'a str],
    touched: &Touched<'a>,
    keys: &Keys,
) -> Result<(Pending<'a>, ByKey<'a>), IndexError> {
    let mut actors = Vec::with_capacity(uris.len());
    let mut rkeys = Vec::with_capacity(uris.len());
    let mut by_key = HashMap::with_capacity(uris.len());
    for uri in uris {
        let (did, _, rkey) = touched[uri];
        let key = keys
            .record(did, rkey)
            .ok_or_else(|| IndexError::Keys(format!("no id for the record key of {uri}")))?;
        actors.push(key.0);
        rkeys.push(key.1);
        by_key.insert(key, *uri);
    }
    let mut rows = Unnest::new();
    rows.column("actor", actors).column("rkey", rkeys);
    let sql = format!(
        "SELECT t.actor, t.rkey, t.live, t.rev, t.seq, \
                COALESCE(at_uri(t.subject_actor, t.subject_collection, t.subject_rkey), \
                         t.record -> 'subject' ->> 'uri') AS subject \
         FROM {table} t JOIN {rows} ON t.actor = v.actor AND t.rkey = v.rkey",
        table = kind.table,
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
    updates: &[RecordUpdate<'a>],
    keys: &Keys,
    pending: &mut Vec<Pending<'a>>,
) -> Result<(), IndexError> {
    let (live, dead): (Vec<&RecordUpdate<'a>>, Vec<&RecordUpdate<'a>>) =
        updates.iter().partition(|u| u.live && u.write.is_some());
    let identity = |uri: &str| {
        keys.record_at(uri)
            .ok_or_else(|| IndexError::Keys(format!("no id for the record key of {uri}")))
    };
    if !live.is_empty() {
        let mut rows = Rows::default();
        for update in &live {
            let (actor, rkey) = identity(update.uri)?;
            rows.actor.push(actor);
            rows.rkey.push(rkey);
            rows.content(keys, update.write, update.rev, update.seq);
        }
        let set: Vec<String> = CONTENT
            .iter()
            .map(|name| format!("{name} = {}", value(name)))
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
            let (actor, rkey) = identity(update.uri)?;
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
