//! The ids of the compact rows (migrations 0021, 0023): accounts in
//! `dids`, collections in `collections`, record keys that are not TIDs in
//! `rkey_names`. A batch resolves every id its likes, reposts and follows need
//! before its transaction starts, in a statement of its own, so that a new
//! id is committed at once and no batch ever waits for another's
//! uncommitted dictionary row while holding record locks. Ids are never
//! deleted or changed, so a process keeps the ones it saw (bounded, like
//! [`super::KnownActors`]).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Mutex;

use deadpool_postgres::GenericClient;

use crate::compact::{RecordKey, Reference};
use crate::db::RowExt;
use crate::error::IndexError;

/// The ids a process has seen, per dictionary. When one is full it starts
/// over (cheaper than an order of use); a miss costs one indexed probe.
pub struct Dictionary {
    dids: Mutex<HashMap<Box<str>, i32>>,
    collections: Mutex<HashMap<Box<str>, i16>>,
    names: Mutex<HashMap<Box<str>, i64>>,
    capacity: usize,
}

/// About 20 MB: the accounts of a few hours of the network's likes.
pub const DEFAULT_DICTIONARY: usize = 200_000;

impl Dictionary {
    pub fn new(capacity: usize) -> Self {
        Dictionary {
            dids: Mutex::new(HashMap::new()),
            collections: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            capacity,
        }
    }
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// The texts a batch needs ids for.
#[derive(Default)]
pub(super) struct Wanted<'a> {
    dids: BTreeSet<&'a str>,
    collections: BTreeSet<&'a str>,
    names: BTreeSet<&'a str>,
}

impl<'a> Wanted<'a> {
    /// A compact row's own identity.
    pub fn record(&mut self, did: &'a str, rkey: &'a str) {
        self.dids.insert(did);
        if let RecordKey::Name(name) = RecordKey::of(rkey) {
            self.names.insert(name);
        }
    }

    /// An account a compact row references, by its DID (any text has an
    /// id).
    pub fn account(&mut self, did: Option<&'a str>) {
        if let Some(did) = did {
            self.dids.insert(did);
        }
    }

    /// A reference a compact row stores, when it has a compact form.
    pub fn reference(&mut self, uri: Option<&'a str>) {
        let Some(reference) = uri.and_then(Reference::parse) else {
            return;
        };
        self.dids.insert(reference.authority);
        self.collections.insert(reference.collection);
        if let RecordKey::Name(name) = reference.rkey {
            self.names.insert(name);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.dids.is_empty() && self.collections.is_empty() && self.names.is_empty()
    }
}

/// The ids of one batch.
#[derive(Default)]
pub(super) struct Keys {
    dids: HashMap<Box<str>, i32>,
    collections: HashMap<Box<str>, i16>,
    names: HashMap<Box<str>, i64>,
}

impl Keys {
    pub fn did(&self, did: &str) -> Option<i32> {
        self.dids.get(did).copied()
    }

    fn rkey(&self, rkey: RecordKey<'_>) -> Option<i64> {
        match rkey {
            RecordKey::Tid(value) => Some(value),
            RecordKey::Name(name) => self.names.get(name).map(|id| -id),
        }
    }

    /// The stored identity of the record at `uri` (of `did`, with the
    /// key `rkey`): (actor id, record key). Every compact row's ids are
    /// resolved before its statements are built, so a missing one is an
    /// error, held for a retry.
    pub fn record(&self, uri: &str, did: &str, rkey: &str) -> Result<(i32, i64), IndexError> {
        self.did(did)
            .zip(self.rkey(RecordKey::of(rkey)))
            .ok_or_else(|| IndexError::Keys(format!("no id for the record key of {uri}")))
    }

    /// The same for a record known by its uri alone.
    pub fn record_at(&self, uri: &str) -> Result<(i32, i64), IndexError> {
        let reference = Reference::parse(uri)
            .ok_or_else(|| IndexError::Keys(format!("{uri} is not a record's uri")))?;
        self.did(reference.authority)
            .zip(self.rkey(reference.rkey))
            .ok_or_else(|| IndexError::Keys(format!("no id for the record key of {uri}")))
    }

    /// A reference's stored form: (actor id, collection id, record key),
    /// `None` when it has no compact form.
    pub fn reference(&self, uri: Option<&str>) -> Option<(i32, i16, i64)> {
        self.ids(Reference::parse(uri?)?)
    }

    /// The stored key of a counted record (`post_counts`): `None` for text
    /// that is not a record's uri, an error when its ids were not resolved.
    pub fn counted(&self, uri: &str) -> Result<Option<(i32, i16, i64)>, IndexError> {
        let Some(reference) = Reference::parse(uri) else {
            return Ok(None);
        };
        self.ids(reference)
            .map(Some)
            .ok_or_else(|| IndexError::Keys(format!("no ids for the counted record {uri}")))
    }

    /// The ids of a parsed reference, when all of them are resolved.
    fn ids(&self, reference: Reference<'_>) -> Option<(i32, i16, i64)> {
        Some((
            self.did(reference.authority)?,
            *self.collections.get(reference.collection)?,
            self.rkey(reference.rkey)?,
        ))
    }

    /// Resolves `wanted` into these keys: from the process's dictionary,
    /// else from the database, creating the missing entries.
    pub async fn resolve(
        &mut self,
        client: &impl GenericClient,
        dictionary: &Dictionary,
        wanted: &Wanted<'_>,
    ) -> Result<(), IndexError> {
        resolve_one(
            client,
            &dictionary.dids,
            dictionary.capacity,
            &wanted.dids,
            &mut self.dids,
            &TABLES[0],
        )
        .await?;
        resolve_one(
            client,
            &dictionary.collections,
            dictionary.capacity,
            &wanted.collections,
            &mut self.collections,
            &TABLES[1],
        )
        .await?;
        resolve_one(
            client,
            &dictionary.names,
            dictionary.capacity,
            &wanted.names,
            &mut self.names,
            &TABLES[2],
        )
        .await
    }
}

/// One dictionary table: its name, text column and the SQL type of its id.
struct Table {
    name: &'static str,
    text: &'static str,
    id_type: &'static str,
}

const TABLES: [Table; 3] = [
    Table {
        name: "dids",
        text: "did",
        id_type: "int4",
    },
    Table {
        name: "collections",
        text: "nsid",
        id_type: "int2",
    },
    Table {
        name: "rkey_names",
        text: "rkey",
        id_type: "int8",
    },
];

impl Table {
    /// Inserts the missing texts of `$1` (in text order, so concurrent
    /// batches take the same order) and returns every id asked for. Rows a
    /// concurrent statement committed meanwhile are not in this
    /// statement's snapshot: [`Table::select_sql`] reads them after.
    fn upsert_sql(&self) -> String {
        let Table {
            name,
            text,
            id_type,
        } = self;
        format!(
            "WITH wanted AS (SELECT DISTINCT w AS t FROM unnest($1::text[]) AS w), \
             inserted AS ( \
               INSERT INTO {name} AS d ({text}) \
               SELECT t FROM wanted WHERE NOT EXISTS (SELECT 1 FROM {name} x WHERE x.{text} = wanted.t) \
               ORDER BY t \
               ON CONFLICT ({text}) DO NOTHING \
               RETURNING d.id, d.{text}) \
             SELECT id::{id_type} AS id, {text} AS t FROM inserted \
             UNION ALL \
             SELECT d.id::{id_type}, d.{text} FROM {name} d JOIN wanted ON d.{text} = wanted.t"
        )
    }

    fn select_sql(&self) -> String {
        let Table {
            name,
            text,
            id_type,
        } = self;
        format!("SELECT id::{id_type} AS id, {text} AS t FROM {name} WHERE {text} = ANY($1)")
    }
}

async fn resolve_one<T>(
    client: &impl GenericClient,
    cache: &Mutex<HashMap<Box<str>, T>>,
    capacity: usize,
    wanted: &BTreeSet<&str>,
    into: &mut HashMap<Box<str>, T>,
    table: &Table,
) -> Result<(), IndexError>
where
    T: Copy + for<'r> tokio_postgres::types::FromSql<'r> + Eq + Hash,
{
    let mut missing: Vec<&str> = Vec::new();
    {
        let cached = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for text in wanted {
            if into.contains_key(*text) {
                continue;
            }
            match cached.get(*text) {
                Some(id) => {
                    into.insert((*text).into(), *id);
                }
                None => missing.push(*text),
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let what = format!("resolving {} ids", table.name);
    let mut found: Vec<(String, T)> = Vec::with_capacity(missing.len());
    for sql in [table.upsert_sql(), table.select_sql()] {
        let statement = client
            .prepare_cached(&sql)
            .await
            .map_err(IndexError::pg(format!("preparing {what}")))?;
        for row in client
            .query(&statement, &[&missing])
            .await
            .map_err(IndexError::pg(what.clone()))?
        {
            found.push((row.col("t", &what)?, row.col("id", &what)?));
        }
        let have: std::collections::HashSet<&str> =
            found.iter().map(|(text, _)| text.as_str()).collect();
        missing.retain(|text| !have.contains(text));
        if missing.is_empty() {
            break;
        }
    }
    if let Some(text) = missing.first() {
        return Err(IndexError::Keys(format!(
            "{} has no id for {text:?} after inserting it",
            table.name
        )));
    }
    let mut cached = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (text, id) in found {
        if cached.len() >= capacity {
            cached.clear();
        }
        cached.insert(text.as_str().into(), id);
        into.insert(text.into_boxed_str(), id);
    }
    Ok(())
}
