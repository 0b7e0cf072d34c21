//! Stream entries (docs/stream-format.md) parsed and validated into the
//! events the index applies. Everything that can be rejected without the
//! database is rejected here, so one bad entry never fails a batch.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use thiserror::Error;

use crate::compact::derives_cid;
use crate::kinds::{is_rebuilt, kind_table, KindTable};
use crate::records::{self, RecordFacts};
use skyhose_proto::syntax::{is_did, is_handle, is_nsid, is_record_key};

/// One entry as read from the Redis Stream: its id and its fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub id: String,
    pub fields: Vec<(String, String)>,
}

impl RawEntry {
    /// An entry from bytes laid out as `key NUL value NUL key NUL value ...`
    /// (invalid UTF-8 replaced, an odd last key given an empty value): the
    /// form the stream-entry fuzz target and its corpus use, so any input
    /// is some entry.
    pub fn from_nul_separated(data: &[u8]) -> RawEntry {
        let parts: Vec<String> = data
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let fields = parts
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
            .collect();
        RawEntry {
            id: "0-1".into(),
            fields,
        }
    }

    /// The inverse of [`RawEntry::from_nul_separated`] for fields without NULs.
    pub fn to_nul_separated(&self) -> Vec<u8> {
        let parts: Vec<&str> = self
            .fields
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        parts.join("\0").into_bytes()
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("entry {entry_id}: {problem}")]
pub struct EntryError {
    pub entry_id: String,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Commit(Commit),
    Identity {
        did: String,
        handle: Option<String>,
        seq: i64,
    },
    Account {
        did: String,
        /// `active` unless the event says the account is inactive; then the
        /// status it gives.
        status: String,
        seq: i64,
    },
    /// A `#sync`: the repo's state was declared anew (any reason), so
    /// what the index holds of it may be stale and the repo is loaded again.
    Sync {
        did: String,
        rev: Option<String>,
        seq: i64,
    },
    /// `info` and types this version does not know: acknowledged, nothing
    /// to index.
    Ignored {
        seq: Option<i64>,
    },
}

impl Event {
    pub fn seq(&self) -> Option<i64> {
        match self {
            Event::Commit(commit) => Some(commit.seq),
            Event::Identity { seq, .. } | Event::Account { seq, .. } | Event::Sync { seq, .. } => {
                Some(*seq)
            }
            Event::Ignored { seq } => *seq,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub repo: String,
    pub rev: Option<String>,
    pub seq: i64,
    pub ops: Vec<Op>,
    /// The repo's MST root before (`prevData`) and after (`data`) the
    /// commit, when the entry carries them.
    pub prev_data: Option<String>,
    pub data: Option<String>,
    /// Why the commit leaves the repo's content partly unknown (`too_big`,
    /// `unreadable_op`), so the repo is loaded again.
    pub resync: Option<&'static str>,
}

/// A commit entry's `prevData` and `data` as CIDs, or what is wrong with them.
fn roots(
    prev_data: Option<&str>,
    data: Option<&str>,
) -> Result<(Option<String>, Option<String>), String> {
    let check = |name: &str, value: Option<&str>| match value {
        None => Ok(None),
        Some(cid) if is_cid_text(cid) => Ok(Some(cid.to_owned())),
        Some(other) => Err(format!("commit {name} {other:?} is not a CID")),
    };
    Ok((check("prevData", prev_data)?, check("data", data)?))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub uri: String,
    pub collection: String,
    pub rkey: String,
    /// `None` for a delete.
    pub write: Option<Write>,
}

/// The new content of a record created or updated by an op.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub cid: String,
    /// The record JSON as it will be stored.
    pub json: String,
    pub facts: RecordFacts,
    /// The row of the collection's projection table (`kinds`), in its
    /// column order; empty for collections without one.
    pub columns: Vec<Option<String>>,
    /// The record is exactly what its kind table's views rebuild from
    /// `columns` (migration 0014), so its row stores no text.
    pub rebuilt: bool,
    /// The record is rebuilt and `cid` is the one its views derive from it
    /// (migration 0027), so its row stores no CID either.
    pub derived_cid: bool,
}

impl Write {
    /// The record text its row stores: none when the views rebuild it.
    pub fn stored_json(&self) -> Option<&str> {
        (!self.rebuilt).then_some(self.json.as_str())
    }
}

pub const ACCOUNT_DELETED: &str = "deleted";
pub const ACCOUNT_ACTIVE: &str = "active";
/// The account status a relay gives a repo whose commits no longer chain.
pub const ACCOUNT_DESYNCHRONIZED: &str = "desynchronized";
/// Resync causes a commit carries (`Commit::resync`).
pub const TOO_BIG: &str = "too_big";
pub const UNREADABLE_OP: &str = "unreadable_op";

pub fn parse_entry(entry: &RawEntry) -> Result<Event, EntryError> {
    let fail = |problem: String| EntryError {
        entry_id: entry.id.clone(),
        problem,
    };
    let kind = entry
        .field("type")
        .ok_or_else(|| fail("missing field `type`".into()))?;
    let seq_text = entry
        .field("seq")
        .ok_or_else(|| fail("missing field `seq`".into()))?;
    let seq: i64 = seq_text
        .parse()
        .map_err(|_| fail(format!("seq {seq_text:?} is not an integer")))?;
    let data_text = entry
        .field("data")
        .ok_or_else(|| fail("missing field `data`".into()))?;
    if !matches!(kind, "commit" | "identity" | "account" | "sync") {
        return Ok(Event::Ignored { seq: Some(seq) });
    }
    if kind == "commit" {
        if let Some(commit) = parse_plain_commit(data_text, seq) {
            return Ok(Event::Commit(commit));
        }
    }
    let data: Value = serde_json::from_str(data_text)
        .map_err(|err| fail(format!("data of a {kind} is not valid JSON: {err}")))?;
    match kind {
        "commit" => parse_commit(&data, seq).map(Event::Commit).map_err(fail),
        "identity" => {
            let did = did_of(&data).map_err(fail)?;
            let handle = match data.get("handle") {
                None | Some(Value::Null) => None,
                Some(Value::String(handle)) if is_handle(handle) => Some(handle.clone()),
                Some(other) => {
                    return Err(fail(format!(
                        "identity handle {other} is not a valid handle"
                    )))
                }
            };
            Ok(Event::Identity { did, handle, seq })
        }
        "sync" => {
            let did = did_of(&data).map_err(fail)?;
            let rev = match data.get("rev") {
                Some(Value::String(rev)) if is_record_key(rev) => Some(rev.clone()),
                None | Some(Value::Null) => None,
                Some(other) => return Err(fail(format!("sync rev {other} is not a TID"))),
            };
            Ok(Event::Sync { did, rev, seq })
        }
        _ => {
            let did = did_of(&data).map_err(fail)?;
            let active = data
                .get("active")
                .and_then(Value::as_bool)
                .ok_or_else(|| fail("account event without a boolean `active`".into()))?;
            let status = if active {
                ACCOUNT_ACTIVE.to_owned()
            } else {
                match data.get("status") {
                    Some(Value::String(status)) if !status.is_empty() && !status.contains('\0') => {
                        status.clone()
                    }
                    None | Some(Value::Null) => "deactivated".to_owned(),
                    Some(other) => {
                        return Err(fail(format!("account status {other} is not a string")))
                    }
                }
            };
            Ok(Event::Account { did, status, seq })
        }
    }
}

/// A commit's `data` as the fast path reads it: only the keys the index
/// uses, strings borrowed where they have no escapes, each record kept as
/// its text.
#[derive(Deserialize)]
struct PlainCommit<'a> {
    #[serde(borrow)]
    repo: Cow<'a, str>,
    #[serde(borrow, default)]
    rev: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ops: Vec<PlainOp<'a>>,
    #[serde(rename = "prevData", borrow, default)]
    prev_data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(rename = "tooBig", default)]
    too_big: Option<bool>,
}

#[derive(Deserialize)]
struct PlainOp<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow, default)]
    cid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
}

/// The commit, when `data` is a well-formed commit whose every op is a
/// delete or carries its record; `None` for anything else, which
/// [`parse_commit`] then reads (and explains, when it is wrong). Nine
/// entries in ten are commits, and this path builds no JSON tree but the
/// records' own and stores each record's text as it came, where the other
/// path would write it out again.
fn parse_plain_commit(data: &str, seq: i64) -> Option<Commit> {
    let plain: PlainCommit<'_> = serde_json::from_str(data).ok()?;
    let repo = plain.repo.as_ref();
    if !is_did(repo) || !plain.rev.as_deref().is_none_or(is_record_key) {
        return None;
    }
    let ops = plain
        .ops
        .iter()
        .map(|op| plain_op(repo, op))
        .collect::<Option<Vec<_>>>()?;
    let (prev_data, data) = roots(plain.prev_data.as_deref(), plain.data.as_deref()).ok()?;
    Some(Commit {
        repo: repo.to_owned(),
        rev: plain.rev.map(Cow::into_owned),
        seq,
        ops,
        prev_data,
        data,
        resync: plain.too_big.unwrap_or(false).then_some(TOO_BIG),
    })
}

fn plain_op(repo: &str, op: &PlainOp<'_>) -> Option<Op> {
    let (collection, rkey) = op.path.split_once('/')?;
    if !is_nsid(collection) || !is_record_key(rkey) {
        return None;
    }
    let write = match op.action.as_ref() {
        "delete" => None,
        "create" | "update" => {
            let cid = op.cid.as_deref().filter(|cid| is_cid_text(cid))?;
            let text = op.record?.get();
            if let Some(write) = plain_record_write(collection, repo, cid, text) {
                return Some(op_of(repo, &op.path, collection, rkey, Some(write)));
            }
            let record: Value = serde_json::from_str(text).ok()?;
            Some(new_write(collection, repo, &op.path, cid, &record, text.to_owned()).ok()?)
        }
        _ => return None,
    };
    Some(op_of(repo, &op.path, collection, rkey, write))
}

/// The create of one record read from a repo (backfill): the same write the
/// stream path builds for an op carrying this record's JSON text, so a
/// backfilled record is stored exactly as its live create would be. A record
/// that the stream path would reject is rejected with the same reason.
pub fn record_op(
    repo: &str,
    collection: &str,
    rkey: &str,
    cid: &str,
    json: String,
) -> Result<Op, String> {
    if !is_nsid(collection) || !is_record_key(rkey) {
        return Err(format!(
            "path {collection}/{rkey} is not a valid collection/rkey"
        ));
    }
    if !is_cid_text(cid) {
        return Err(format!(
            "record {collection}/{rkey} has an invalid cid {cid:?}"
        ));
    }
    let path = format!("{collection}/{rkey}");
    let write = match plain_record_write(collection, repo, cid, &json) {
        Some(write) => write,
        None => {
            let record: Value = serde_json::from_str(&json)
                .map_err(|e| format!("record of {path} is not valid JSON: {e}"))?;
            new_write(collection, repo, &path, cid, &record, json)?
        }
    };
    Ok(op_of(repo, &path, collection, rkey, Some(write)))
}

/// The delete of the record at `collection/rkey` of `repo`.
pub fn delete_op(repo: &str, collection: &str, rkey: &str) -> Op {
    op_of(
        repo,
        &format!("{collection}/{rkey}"),
        collection,
        rkey,
        None,
    )
}

fn op_of(repo: &str, path: &str, collection: &str, rkey: &str, write: Option<Write>) -> Op {
    Op {
        uri: format!("at://{repo}/{path}"),
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        write,
    }
}

/// A like or repost record with nothing but its `$type`, `createdAt`,
/// `subject` and `via`, every string without escapes. Seven ops in ten
/// are such likes, reposts or follows; read this way they need no JSON tree.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainStrongRefRecord<'a> {
    #[serde(rename = "$type")]
    kind: &'a str,
    #[serde(rename = "createdAt")]
    created_at: &'a str,
    subject: PlainStrongRef<'a>,
    #[serde(borrow, default)]
    via: Option<PlainStrongRef<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainStrongRef<'a> {
    cid: &'a str,
    uri: &'a str,
}

/// A follow record with nothing but its `$type`, `createdAt` and `subject`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainFollowRecord<'a> {
    #[serde(rename = "$type")]
    kind: &'a str,
    #[serde(rename = "createdAt")]
    created_at: &'a str,
    subject: &'a str,
}

/// The write of a plain like, repost or follow record (above), as
/// [`new_write`] makes it from the record's JSON tree; `None` for any
/// other record, or one that is not valid, which the tree then reads (and
/// explains).
fn plain_record_write(collection: &str, repo: &str, cid: &str, text: &str) -> Option<Write> {
    // The tree's path explains the error.
    if has_nul(text) {
        return None;
    }
    let (facts, columns) = match collection {
        records::LIKE | records::REPOST => {
            let record: PlainStrongRefRecord<'_> = serde_json::from_str(text).ok()?;
            if record.kind != collection {
                return None;
            }
            let via = record.via.as_ref();
            let facts = records::derive_strong_ref(
                collection,
                repo,
                record.subject.uri,
                via.map(|via| via.uri),
            )
            .ok()?;
            // The like and repost tables' columns, in their order.
            let columns = vec![
                Some(record.subject.uri.to_owned()),
                Some(record.subject.cid.to_owned()),
                via.map(|via| via.uri.to_owned()),
                via.map(|via| via.cid.to_owned()),
                Some(record.created_at.to_owned()),
            ];
            (facts, columns)
        }
        records::FOLLOW => {
            let record: PlainFollowRecord<'_> = serde_json::from_str(text).ok()?;
            if record.kind != collection {
                return None;
            }
            let facts = records::derive_follow(repo, record.subject).ok()?;
            let columns = vec![
                Some(record.subject.to_owned()),
                Some(record.created_at.to_owned()),
            ];
            (facts, columns)
        }
        _ => return None,
    };
    let kind = kind_table(collection)?;
    debug_assert_eq!(columns.len(), kind.columns.len());
    Some(write_of(Some(kind), cid, text.to_owned(), facts, columns))
}

/// PostgreSQL text and jsonb cannot hold NUL characters.
fn has_nul(json: &str) -> bool {
    json.contains("\\u0000")
}

/// The write of a record of `kind` whose facts and projected columns are
/// known, by either parse path: the one place that decides whether its row
/// leaves the text to the views.
fn write_of(
    kind: Option<&KindTable>,
    cid: &str,
    json: String,
    facts: RecordFacts,
    columns: Vec<Option<String>>,
) -> Write {
    let rebuilt = kind.is_some_and(|kind| is_rebuilt(kind, &columns, &json));
    let derived_cid = rebuilt && derives_cid(&json, cid);
    Write {
        cid: cid.to_owned(),
        json,
        facts,
        columns,
        rebuilt,
        derived_cid,
    }
}

fn did_of(data: &Value) -> Result<String, String> {
    let did = data
        .get("did")
        .and_then(Value::as_str)
        .ok_or_else(|| "missing `did`".to_owned())?;
    if !is_did(did) {
        return Err(format!("invalid DID {did:?}"));
    }
    Ok(did.to_owned())
}

fn parse_commit(data: &Value, seq: i64) -> Result<Commit, String> {
    let repo = data
        .get("repo")
        .and_then(Value::as_str)
        .ok_or_else(|| "commit without a `repo`".to_owned())?;
    if !is_did(repo) {
        return Err(format!("commit repo {repo:?} is not a valid DID"));
    }
    let rev = match data.get("rev") {
        None | Some(Value::Null) => None,
        Some(Value::String(rev)) if is_record_key(rev) => Some(rev.clone()),
        Some(other) => return Err(format!("commit rev {other} is not a TID")),
    };
    let ops = data
        .get("ops")
        .and_then(Value::as_array)
        .ok_or_else(|| "commit without an `ops` array".to_owned())?;
    let mut unreadable = false;
    let ops = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| {
            let flagged = is_flagged_without_record(repo, seq, op);
            unreadable |= flagged;
            !flagged
        })
        .map(|(index, op)| parse_op(repo, op).map_err(|problem| format!("op {index}: {problem}")))
        .collect::<Result<Vec<_>, _>>()?;
    let text_of = |name: &str| match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(other) => Err(format!("commit {name} {other} is not a CID")),
    };
    let (prev_data, root) = roots(text_of("prevData")?, text_of("data")?)?;
    let too_big = match data.get("tooBig") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(too_big)) => *too_big,
        Some(other) => return Err(format!("commit tooBig {other} is not a boolean")),
    };
    let resync = if too_big {
        Some(TOO_BIG)
    } else {
        unreadable.then_some(UNREADABLE_OP)
    };
    Ok(Commit {
        repo: repo.to_owned(),
        rev,
        seq,
        ops,
        prev_data,
        data: root,
        resync,
    })
}

/// Ingest keeps an op whose record it could not read from the commit's blocks,
/// flagged with `error` and without `record` (docs/stream-format.md). Its content
/// is unknown, so there is nothing to index; the rest of the commit still lands,
/// and the op is logged and counted rather than failing the whole entry.
fn is_flagged_without_record(repo: &str, seq: i64, op: &Value) -> bool {
    let flagged =
        op.get("record").is_none() && op.get("action").and_then(Value::as_str) != Some("delete");
    match op.get("error").and_then(Value::as_str) {
        Some(error) if flagged => {
            let path = op.get("path").and_then(Value::as_str).unwrap_or("?");
            tracing::warn!(
                seq,
                repo,
                path,
                error,
                "op without a readable record is not indexed"
            );
            metrics::counter!("skyhose_index_unreadable_ops_total").increment(1);
            true
        }
        _ => false,
    }
}

fn parse_op(repo: &str, op: &Value) -> Result<Op, String> {
    let action = op
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| "missing `action`".to_owned())?;
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| "missing `path`".to_owned())?;
    let (collection, rkey) = path
        .split_once('/')
        .ok_or_else(|| format!("path {path:?} is not collection/rkey"))?;
    if !is_nsid(collection) || !is_record_key(rkey) {
        return Err(format!("path {path:?} is not a valid collection/rkey"));
    }
    let uri = format!("at://{repo}/{path}");
    let write = match action {
        "delete" => None,
        "create" | "update" => {
            let cid = op
                .get("cid")
                .and_then(Value::as_str)
                .filter(|cid| is_cid_text(cid))
                .ok_or_else(|| format!("{action} of {path} without a valid `cid`"))?;
            let record = op
                .get("record")
                .ok_or_else(|| format!("{action} of {path} without a `record`"))?;
            let json =
                serde_json::to_string(record).map_err(|e| format!("record of {path}: {e}"))?;
            Some(new_write(collection, repo, path, cid, record, json)?)
        }
        other => return Err(format!("unknown action {other:?}")),
    };
    Ok(Op {
        uri,
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        write,
    })
}

fn is_cid_text(cid: &str) -> bool {
    !cid.is_empty() && cid.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The write of `record` at `path`, to be stored as `json` (its text).
/// Both parse paths build their writes here; inlined, the fast one costs
/// what it did before they shared it (`--bench parse`: 6–10% slower without).
#[inline]
fn new_write(
    collection: &str,
    repo: &str,
    path: &str,
    cid: &str,
    record: &Value,
    json: String,
) -> Result<Write, String> {
    let facts = records::derive(collection, repo, record).map_err(|e| e.to_string())?;
    if has_nul(&json) {
        return Err(format!("record of {path} contains a NUL character"));
    }
    let kind = kind_table(collection);
    let columns = kind.map(|kind| kind.extract(record)).unwrap_or_default();
    Ok(write_of(kind, cid, json, facts, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str, data: &str, seq: &str) -> RawEntry {
        RawEntry {
            id: "1-0".into(),
            fields: vec![
                ("type".into(), kind.into()),
                ("data".into(), data.into()),
                ("seq".into(), seq.into()),
            ],
        }
    }

    #[test]
    fn parses_a_commit() {
        let data = r#"{"repo":"did:plc:a","rev":"3l","ops":[
            {"action":"create","path":"app.bsky.feed.post/3l","cid":"bafyx","record":{"$type":"app.bsky.feed.post","text":"hi","createdAt":"2024-01-01T00:00:00Z"}},
            {"action":"delete","path":"app.bsky.feed.like/3k"}]}"#;
        let Event::Commit(commit) = parse_entry(&raw("commit", data, "7")).expect("valid") else {
            panic!("not a commit");
        };
        assert_eq!(commit.seq, 7);
        assert_eq!(commit.ops.len(), 2);
        assert_eq!(commit.ops[0].uri, "at://did:plc:a/app.bsky.feed.post/3l");
        assert!(commit.ops[1].write.is_none());
    }

    #[test]
    fn ops_flagged_by_ingest_are_left_out_and_the_rest_lands() {
        let data = r#"{"repo":"did:plc:a","rev":"3l","ops":[
            {"action":"create","path":"app.bsky.feed.post/3l","cid":"bafyx","error":"record block missing from the commit's CAR"},
            {"action":"delete","path":"app.bsky.feed.like/3k"}]}"#;
        let Event::Commit(commit) = parse_entry(&raw("commit", data, "8")).expect("valid") else {
            panic!("not a commit");
        };
        assert_eq!(commit.ops.len(), 1);
        assert_eq!(commit.ops[0].uri, "at://did:plc:a/app.bsky.feed.like/3k");
        // Without the flag, a create with no record is still an error.
        let data = r#"{"repo":"did:plc:a","ops":[{"action":"create","path":"app.bsky.feed.post/3l","cid":"bafyx"}]}"#;
        assert!(parse_entry(&raw("commit", data, "9")).is_err());
    }

    /// Both commit paths read a simulated network's commits alike; only the
    /// record text differs in form (as it came against written out again).
    #[test]
    fn the_fast_path_reads_commits_as_the_full_parse_does() {
        let mut network = skyhose_sim::Network::new(skyhose_sim::SimConfig {
            seed: 11,
            accounts: 500,
            ..skyhose_sim::SimConfig::default()
        });
        let normalized = |mut commit: Commit| {
            for op in &mut commit.ops {
                if let Some(write) = &mut op.write {
                    let value: Value = serde_json::from_str(&write.json).expect("stored JSON");
                    write.json = value.to_string();
                }
            }
            commit
        };
        let mut compared = 0;
        while compared < 3_000 {
            let event = network.next_event();
            let Ok(Some(entry)) =
                skyhose_ingest::event_to_entry(&event, skyhose_ingest::Compat::Full)
            else {
                continue;
            };
            if entry.kind.as_str() != "commit" {
                continue;
            }
            let fast = parse_plain_commit(&entry.data, entry.seq).expect("a plain commit");
            let data: Value = serde_json::from_str(&entry.data).expect("JSON");
            let full = parse_commit(&data, entry.seq).expect("a valid commit");
            assert_eq!(normalized(fast), normalized(full), "{}", entry.data);
            compared += 1;
        }
    }

    /// A like, repost or follow read without a JSON tree is written as the
    /// tree would write it; anything the plain read does not cover is left
    /// to the tree.
    #[test]
    fn plain_likes_reposts_and_follows_are_written_as_the_tree_writes_them() {
        let author = "did:plc:author";
        let subject = r#"{"cid":"bafyp","uri":"at://did:plc:b/app.bsky.feed.post/3l"}"#;
        let via = r#"{"cid":"bafyr","uri":"at://did:plc:c/app.bsky.feed.repost/3k"}"#;
        let own_via = r#"{"cid":"bafyr","uri":"at://did:plc:author/app.bsky.feed.repost/3k"}"#;
        let cases = [
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"x","subject":{subject}}}"#), true),
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"x","subject":{subject},"via":{via}}}"#), true),
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"x","subject":{subject},"via":{own_via}}}"#), true),
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"x","subject":{subject},"via":null}}"#), true),
            (records::REPOST, format!(r#"{{"subject":{subject},"createdAt":"x","$type":"app.bsky.feed.repost"}}"#), true),
            (records::FOLLOW, r#"{"$type":"app.bsky.graph.follow","createdAt":"x","subject":"did:plc:b"}"#.to_owned(), true),
            // Left to the tree: extra fields, escapes, wrong types, a
            // foreign $type, invalid references, duplicate keys, NUL.
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"x","subject":{subject},"extra":1}}"#), false),
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"a"b","subject":{subject}}}"#), false),
            (records::LIKE, r#"{"$type":"app.bsky.feed.like","createdAt":"x","subject":{"cid":{"$link":"bafy"},"uri":"at://did:plc:b/app.bsky.feed.post/3l"}}"#.to_owned(), false),
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.repost","createdAt":"x","subject":{subject}}}"#), false),
            (records::LIKE, r#"{"$type":"app.bsky.feed.like","createdAt":"x","subject":{"cid":"bafy","uri":"not a uri"}}"#.to_owned(), false),
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"x","createdAt":"y","subject":{subject}}}"#), false),
            (records::LIKE, format!(r#"{{"$type":"app.bsky.feed.like","createdAt":"x","subject":{subject}}}"#).replace("x", "\\u0000"), false),
            (records::FOLLOW, r#"{"$type":"app.bsky.graph.follow","createdAt":"x","subject":"nope"}"#.to_owned(), false),
            (records::FOLLOW, r#"{"$type":"app.bsky.graph.follow","subject":"did:plc:b"}"#.to_owned(), false),
        ];
        for (collection, text, plain) in cases {
            let fast = plain_record_write(collection, author, "bafyx", &text);
            assert_eq!(fast.is_some(), plain, "{text}");
            if let Some(fast) = fast {
                let record: Value = serde_json::from_str(&text).expect("JSON");
                let path = format!("{collection}/3z");
                let tree = new_write(collection, author, &path, "bafyx", &record, text.clone())
                    .expect("valid");
                assert_eq!(fast, tree, "{text}");
            }
        }
    }

    #[test]
    fn unusual_commits_take_the_full_parse() {
        for data in [
            r#"{"repo":"did:plc:a","ops":[{"action":"create","path":"app.bsky.feed.post/3l","cid":"bafyx","error":"record block missing"}]}"#,
            r#"{"repo":"did:plc:a","ops":[{"action":"create","path":"app.bsky.feed.post/3l","cid":"bafyx","record":null}]}"#,
            r#"{"repo":"did:plc:a","rev":5,"ops":[]}"#,
            r#"{"repo":"nope","ops":[]}"#,
            r#"{"repo":"did:plc:a","ops":[{"action":"create","path":"app.bsky.feed.post/3l","cid":"bafyx","record":{"text":"a\u0000"}}]}"#,
            r#"{"repo":"did:plc:a","ops":[{"action":"move","path":"app.bsky.feed.post/3l"}]}"#,
        ] {
            assert!(parse_plain_commit(data, 1).is_none(), "{data}");
        }
        let plain = r#"{"repo":"did:plc:a","rev":"3l","since":null,"ops":[{"action":"delete","path":"app.bsky.feed.like/3k","cid":null}],"time":"x"}"#;
        assert!(parse_plain_commit(plain, 1).is_some());
    }

    #[test]
    fn rejects_bad_entries_with_a_reason() {
        let err = parse_entry(&raw("commit", "{not json", "1")).expect_err("bad json");
        assert!(err.problem.contains("not valid JSON"), "{err}");
        let err =
            parse_entry(&raw("commit", r#"{"repo":"nope","ops":[]}"#, "1")).expect_err("bad did");
        assert!(err.problem.contains("nope"), "{err}");
        let err =
            parse_entry(&raw("identity", r#"{"did":"did:plc:a"}"#, "x")).expect_err("bad seq");
        assert!(err.problem.contains("seq"), "{err}");
    }

    #[test]
    fn account_status() {
        let event = parse_entry(&raw(
            "account",
            r#"{"did":"did:plc:a","active":false,"status":"takendown"}"#,
            "3",
        ));
        assert_eq!(
            event,
            Ok(Event::Account {
                did: "did:plc:a".into(),
                status: "takendown".into(),
                seq: 3
            })
        );
    }
}
