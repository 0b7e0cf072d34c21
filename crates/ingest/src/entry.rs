//! Relay events to stream entries, exactly as docs/stream-format.md describes.
//!
//! An op whose record block is missing from the commit's CAR, or cannot be
//! decoded, is kept: it carries its `cid`, no `record`, and an `error` saying
//! why. Dropping it would silently lose the fact that the record changed; the
//! index can still apply a delete-or-skip decision from the path and cid.

use skyhose_proto::frame::{Account, Commit, Event, Identity, Info, OpAction, Sync};
use skyhose_proto::{car, repo, Cid};

use skyhose_proto::datamodel::{write_json_key, write_json_str, write_record_json};

/// The `type` field of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Commit,
    Identity,
    Account,
    Sync,
    Info,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Commit => "commit",
            EntryKind::Identity => "identity",
            EntryKind::Account => "account",
            EntryKind::Sync => "sync",
            EntryKind::Info => "info",
        }
    }
}

/// Which readers the entries are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compat {
    /// Every event kind, commits with `rev`, `since`, `time` and `commit`.
    #[default]
    Full,
    /// Only what the seed system's readers understand: commit, identity and
    /// account entries; commits carry only `repo` and `ops`.
    Seed,
}

/// One stream entry: the fields `type`, `data`, `seq` in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub kind: EntryKind,
    /// The JSON object, as text.
    pub data: String,
    /// The relay seq. An `info` frame has none: it gets 0 here and the ingest
    /// loop stamps it with the seq of the last event written before it.
    pub seq: i64,
    /// Ops written with an `error` instead of a `record`.
    pub op_errors: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("{kind} event has negative seq {seq}")]
    NegativeSeq { kind: &'static str, seq: i64 },
}

/// Conversion settings beyond the compatibility mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvertOptions {
    pub compat: Compat,
    /// Re-hash each record block and flag the op if it does not match its CID.
    pub verify_cids: bool,
}

/// The entry for `ev`, or `None` for events that produce none (error frames;
/// `sync` and `info` in seed mode). Record blocks are not re-hashed.
pub fn event_to_entry(ev: &Event, compat: Compat) -> Result<Option<StreamEntry>, ConvertError> {
    event_to_entry_with(
        ev,
        ConvertOptions {
            compat,
            verify_cids: false,
        },
    )
}

pub fn event_to_entry_with(
    ev: &Event,
    opts: ConvertOptions,
) -> Result<Option<StreamEntry>, ConvertError> {
    let seed = opts.compat == Compat::Seed;
    let entry = match ev {
        Event::Commit(c) => commit_entry(c, opts)?,
        Event::Identity(i) => identity_entry(i)?,
        Event::Account(a) => account_entry(a)?,
        Event::Sync(s) if !seed => sync_entry(s)?,
        Event::Info(i) if !seed => info_entry(i),
        Event::Sync(_) | Event::Info(_) | Event::Error(_) => return Ok(None),
    };
    Ok(Some(entry))
}

fn checked_seq(kind: EntryKind, seq: i64) -> Result<i64, ConvertError> {
    if seq < 0 {
        return Err(ConvertError::NegativeSeq {
            kind: kind.as_str(),
            seq,
        });
    }
    Ok(seq)
}

fn push_cid(out: &mut String, cid: &Cid) {
    use std::fmt::Write;
    out.push('"');
    let _ = write!(out, "{cid}");
    out.push('"');
}

fn push_optional_cid(out: &mut String, cid: Option<&Cid>) {
    match cid {
        Some(cid) => push_cid(out, cid),
        None => out.push_str("null"),
    }
}

/// The MST root the commit block names, when the block is in the CAR and
/// reads as a commit. Whether it is signed properly is not checked here.
fn commit_data_root(c: &Commit) -> Option<Cid> {
    let block = car::find_block(&c.blocks, &c.commit).ok()??;
    repo::Commit::decode(block).ok().map(|commit| commit.data)
}

/// Largest record block taken into the stream. A frame may be megabytes,
/// but records are small (a post is well under 10 KiB); a larger one is kept
/// as an op with its `error` instead of travelling through Redis and
/// PostgreSQL and being served.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

fn record_json(car: &[u8], cid: &Cid, verify: bool, out: &mut String) -> Result<(), String> {
    let bytes = car::find_block(car, cid)
        .map_err(|e| format!("commit blocks: {e}"))?
        .ok_or("record block missing from the commit's blocks")?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "record block of {} bytes is over the {MAX_RECORD_BYTES}-byte limit",
            bytes.len()
        ));
    }
    if verify && Cid::for_dag_cbor(bytes) != *cid {
        return Err("record block does not hash to its CID".to_owned());
    }
    write_record_json(bytes, out)
}

fn commit_entry(c: &Commit, opts: ConvertOptions) -> Result<StreamEntry, ConvertError> {
    let seq = checked_seq(EntryKind::Commit, c.seq)?;
    let mut out = String::with_capacity(256 + c.blocks.len() * 2);
    let mut op_errors = 0;
    out.push('{');
    write_json_key(&mut out, "repo");
    write_json_str(&mut out, &c.repo);
    out.push_str(",\"ops\":[");
    for (i, op) in c.ops.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        write_json_key(&mut out, "action");
        write_json_str(&mut out, op.action.as_str());
        out.push(',');
        write_json_key(&mut out, "path");
        write_json_str(&mut out, &op.path);
        if op.action != OpAction::Delete {
            let problem = match &op.cid {
                Some(cid) => {
                    out.push_str(",\"cid\":");
                    push_cid(&mut out, cid);
                    let mark = out.len();
                    out.push_str(",\"record\":");
                    let result = record_json(&c.blocks, cid, opts.verify_cids, &mut out);
                    if result.is_err() {
                        out.truncate(mark);
                    }
                    result.err()
                }
                None => Some(format!("{} op without a cid", op.action.as_str())),
            };
            if let Some(problem) = problem {
                op_errors += 1;
                out.push(',');
                write_json_key(&mut out, "error");
                write_json_str(&mut out, &problem);
            }
        }
        out.push('}');
    }
    out.push(']');
    if opts.compat == Compat::Full {
        out.push(',');
        write_json_key(&mut out, "rev");
        write_json_str(&mut out, &c.rev);
        out.push(',');
        write_json_key(&mut out, "since");
        match &c.since {
            Some(since) => write_json_str(&mut out, since),
            None => out.push_str("null"),
        }
        out.push(',');
        write_json_key(&mut out, "time");
        write_json_str(&mut out, &c.time);
        out.push(',');
        write_json_key(&mut out, "commit");
        push_cid(&mut out, &c.commit);
        // The index compares `prevData` with the data root it holds for the
        // repo, and keeps `data` as the root after this commit: a gap between
        // them means commits were missed and the repo must be fetched again.
        out.push(',');
        write_json_key(&mut out, "prevData");
        push_optional_cid(&mut out, c.prev_data.as_ref());
        out.push(',');
        write_json_key(&mut out, "data");
        push_optional_cid(&mut out, commit_data_root(c).as_ref());
        if c.too_big {
            out.push_str(",\"tooBig\":true");
        }
    }
    out.push('}');
    Ok(StreamEntry {
        kind: EntryKind::Commit,
        data: out,
        seq,
        op_errors,
    })
}

fn identity_entry(i: &Identity) -> Result<StreamEntry, ConvertError> {
    let seq = checked_seq(EntryKind::Identity, i.seq)?;
    let mut out = String::with_capacity(128);
    out.push('{');
    write_json_key(&mut out, "did");
    write_json_str(&mut out, &i.did);
    out.push(',');
    write_json_key(&mut out, "handle");
    match &i.handle {
        Some(handle) => write_json_str(&mut out, handle),
        None => out.push_str("null"),
    }
    out.push(',');
    write_json_key(&mut out, "time");
    write_json_str(&mut out, &i.time);
    out.push('}');
    Ok(simple(EntryKind::Identity, out, seq))
}

fn account_entry(a: &Account) -> Result<StreamEntry, ConvertError> {
    let seq = checked_seq(EntryKind::Account, a.seq)?;
    let mut out = String::with_capacity(128);
    out.push('{');
    write_json_key(&mut out, "did");
    write_json_str(&mut out, &a.did);
    out.push(',');
    write_json_key(&mut out, "active");
    out.push_str(if a.active { "true" } else { "false" });
    if let Some(status) = &a.status {
        out.push(',');
        write_json_key(&mut out, "status");
        write_json_str(&mut out, status);
    }
    out.push(',');
    write_json_key(&mut out, "time");
    write_json_str(&mut out, &a.time);
    out.push('}');
    Ok(simple(EntryKind::Account, out, seq))
}

fn sync_entry(s: &Sync) -> Result<StreamEntry, ConvertError> {
    let seq = checked_seq(EntryKind::Sync, s.seq)?;
    let mut out = String::with_capacity(192);
    out.push('{');
    write_json_key(&mut out, "did");
    write_json_str(&mut out, &s.did);
    out.push(',');
    write_json_key(&mut out, "rev");
    write_json_str(&mut out, &s.rev);
    out.push(',');
    write_json_key(&mut out, "commit");
    // The commit CID is the root of the sync's CAR; a sync without a readable
    // root still says which repo to re-sync, so it is kept with a null commit.
    match car::read_car(&s.blocks)
        .ok()
        .and_then(|(roots, _)| roots.first().copied())
    {
        Some(root) => push_cid(&mut out, &root),
        None => out.push_str("null"),
    }
    out.push(',');
    write_json_key(&mut out, "time");
    write_json_str(&mut out, &s.time);
    out.push('}');
    Ok(simple(EntryKind::Sync, out, seq))
}

/// A `sync` entry asking the index to fetch `did`'s repo again, in place of
/// a commit that could not be accepted; `reason` says why (a
/// `RepoError::reason` label or `key_unavailable`).
pub fn resync_entry(
    did: &str,
    rev: &str,
    time: &str,
    seq: i64,
    reason: &str,
) -> Result<StreamEntry, ConvertError> {
    let seq = checked_seq(EntryKind::Sync, seq)?;
    let mut out = String::with_capacity(160);
    out.push('{');
    write_json_key(&mut out, "did");
    write_json_str(&mut out, did);
    out.push(',');
    write_json_key(&mut out, "rev");
    write_json_str(&mut out, rev);
    out.push_str(",\"commit\":null,");
    write_json_key(&mut out, "time");
    write_json_str(&mut out, time);
    out.push(',');
    write_json_key(&mut out, "reason");
    write_json_str(&mut out, reason);
    out.push('}');
    Ok(simple(EntryKind::Sync, out, seq))
}

fn info_entry(i: &Info) -> StreamEntry {
    let mut out = String::with_capacity(96);
    out.push('{');
    write_json_key(&mut out, "name");
    write_json_str(&mut out, &i.name);
    out.push(',');
    write_json_key(&mut out, "message");
    match &i.message {
        Some(message) => write_json_str(&mut out, message),
        None => out.push_str("null"),
    }
    out.push('}');
    simple(EntryKind::Info, out, 0)
}

fn simple(kind: EntryKind, data: String, seq: i64) -> StreamEntry {
    StreamEntry {
        kind,
        data,
        seq,
        op_errors: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhose_proto::car::write_car;
    use skyhose_proto::cbor::encode;
    use skyhose_proto::cbor::Value;
    use skyhose_proto::frame::RepoOp;

    fn commit_with(record: &Value, include_block: bool) -> (Commit, Cid) {
        let bytes = encode(record);
        let cid = Cid::for_dag_cbor(&bytes);
        let commit_cid = Cid::for_dag_cbor(b"commit");
        let blocks = if include_block {
            vec![(cid, bytes)]
        } else {
            Vec::new()
        };
        let commit = Commit {
            seq: 42,
            repo: "did:plc:abc".into(),
            rev: "3laaaaaaaaaa2".into(),
            since: None,
            time: "2024-01-01T00:00:00.000Z".into(),
            commit: commit_cid,
            blocks: write_car(&[commit_cid], &blocks),
            ops: vec![
                RepoOp {
                    action: OpAction::Create,
                    path: "app.bsky.feed.post/3laaaaaaaaaa2".into(),
                    cid: Some(cid),
                    prev: None,
                },
                RepoOp {
                    action: OpAction::Delete,
                    path: "app.bsky.feed.like/3laaaaaaaaaa3".into(),
                    cid: None,
                    prev: None,
                },
            ],
            blobs: Vec::new(),
            too_big: false,
            rebase: false,
            prev_data: None,
        };
        (commit, cid)
    }

    fn post() -> Value {
        Value::map([
            ("$type", Value::from("app.bsky.feed.post")),
            ("text", Value::from("hi \"there\"\n")),
            ("createdAt", Value::from("2024-01-01T00:00:00.000Z")),
            ("blob", Value::Bytes(vec![1, 2, 3, 250])),
            ("ref", Value::Link(Cid::for_raw(b"x"))),
        ])
    }

    fn parse(entry: &StreamEntry) -> serde_json::Value {
        serde_json::from_str(&entry.data).unwrap_or_default()
    }

    #[test]
    fn commit_carries_records_in_data_model_json() {
        let (commit, cid) = commit_with(&post(), true);
        let entry = event_to_entry(&Event::Commit(commit), Compat::Full)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no entry"));
        assert_eq!(
            (entry.kind, entry.seq, entry.op_errors),
            (EntryKind::Commit, 42, 0)
        );
        let data = parse(&entry);
        let expected = serde_json::json!({
            "repo": "did:plc:abc",
            "ops": [
                {"action": "create", "path": "app.bsky.feed.post/3laaaaaaaaaa2", "cid": cid.to_string(),
                 "record": {"$type": "app.bsky.feed.post", "text": "hi \"there\"\n",
                            "createdAt": "2024-01-01T00:00:00.000Z",
                            "blob": {"$bytes": "AQID+g"},
                            "ref": {"$link": Cid::for_raw(b"x").to_string()}}},
                {"action": "delete", "path": "app.bsky.feed.like/3laaaaaaaaaa3"}
            ],
            "rev": "3laaaaaaaaaa2", "since": null, "time": "2024-01-01T00:00:00.000Z",
            "commit": Cid::for_dag_cbor(b"commit").to_string(),
            "prevData": null, "data": null,
        });
        assert_eq!(data, expected);
    }

    #[test]
    fn commit_names_its_data_roots_and_too_big() {
        let (mut commit, _) = commit_with(&post(), true);
        let key = skyhose_proto::crypto::SigningKey::from_bytes(
            skyhose_proto::crypto::Curve::K256,
            &[7; 32],
        )
        .unwrap_or_else(|| panic!("key"));
        let data_root = Cid::for_dag_cbor(b"mst root");
        let (commit_cid, block, _) =
            repo::Commit::signed(&commit.repo, data_root, &commit.rev, None, &key);
        let prev_data = Cid::for_dag_cbor(b"previous root");
        commit.commit = commit_cid;
        commit.blocks = write_car(&[commit_cid], &[(commit_cid, block)]);
        commit.prev_data = Some(prev_data);
        commit.too_big = true;
        let entry = event_to_entry(&Event::Commit(commit.clone()), Compat::Full)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no entry"));
        let data = parse(&entry);
        assert_eq!(data["prevData"], prev_data.to_string());
        assert_eq!(data["data"], data_root.to_string());
        assert_eq!(data["tooBig"], true);
        let seed = event_to_entry(&Event::Commit(commit), Compat::Seed)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no entry"));
        assert!(parse(&seed).get("prevData").is_none());
    }

    #[test]
    fn resync_request_is_a_sync_entry_with_its_reason() {
        let (commit, _) = commit_with(&post(), true);
        let entry = resync_entry(
            &commit.repo,
            &commit.rev,
            &commit.time,
            commit.seq,
            "bad_signature",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((entry.kind, entry.seq), (EntryKind::Sync, 42));
        assert_eq!(
            parse(&entry),
            serde_json::json!({"did": "did:plc:abc", "rev": "3laaaaaaaaaa2", "commit": null,
                               "time": "2024-01-01T00:00:00.000Z", "reason": "bad_signature"})
        );
    }

    #[test]
    fn seed_mode_keeps_only_repo_and_ops_and_skips_sync_and_info() {
        let (commit, _) = commit_with(&post(), true);
        let entry = event_to_entry(&Event::Commit(commit), Compat::Seed)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no entry"));
        let data = parse(&entry);
        let keys: Vec<_> = data
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys, vec!["ops".to_owned(), "repo".to_owned()]);
        let info = Event::Info(Info {
            name: "OutdatedCursor".into(),
            message: None,
        });
        assert_eq!(event_to_entry(&info, Compat::Seed), Ok(None));
        assert!(matches!(event_to_entry(&info, Compat::Full), Ok(Some(_))));
    }

    #[test]
    fn missing_or_corrupt_record_is_flagged_not_dropped() {
        let (commit, cid) = commit_with(&post(), false);
        let entry = event_to_entry(&Event::Commit(commit), Compat::Full)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no entry"));
        assert_eq!(entry.op_errors, 1);
        let data = parse(&entry);
        let op = &data["ops"][0];
        assert_eq!(op["cid"], cid.to_string());
        assert!(op.get("record").is_none());
        assert!(op["error"].as_str().unwrap_or_default().contains("missing"));

        let (mut commit, _) = commit_with(&post(), true);
        commit.blocks.truncate(commit.blocks.len() - 3);
        let entry = event_to_entry(&Event::Commit(commit), Compat::Full)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no entry"));
        assert_eq!(entry.op_errors, 1);
        assert!(parse(&entry)["ops"][0]["error"].is_string());
    }

    #[test]
    fn oversized_record_is_flagged_not_stored() {
        let mut record = post();
        if let Value::Map(fields) = &mut record {
            fields.insert("text".into(), Value::from("x".repeat(MAX_RECORD_BYTES)));
        }
        let (commit, _) = commit_with(&record, true);
        let entry = event_to_entry(&Event::Commit(commit), Compat::Full)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no entry"));
        assert_eq!(entry.op_errors, 1);
        let op = &parse(&entry)["ops"][0];
        assert!(op.get("record").is_none());
        assert!(op["error"].as_str().unwrap_or_default().contains("limit"));
        assert!(entry.data.len() < 4096, "the record did not travel");
    }

    #[test]
    fn identity_and_account_shapes() {
        let id = Event::Identity(Identity {
            seq: 7,
            did: "did:plc:x".into(),
            time: "t".into(),
            handle: Some("a.test".into()),
        });
        let entry = event_to_entry(&id, Compat::Seed).ok().flatten();
        assert_eq!(
            entry.map(|e| (e.kind, e.data, e.seq)),
            Some((
                EntryKind::Identity,
                r#"{"did":"did:plc:x","handle":"a.test","time":"t"}"#.to_owned(),
                7
            ))
        );
        let account = Event::Account(Account {
            seq: 8,
            did: "did:plc:x".into(),
            time: "t".into(),
            active: false,
            status: Some("takendown".into()),
        });
        let entry = event_to_entry(&account, Compat::Full).ok().flatten();
        assert_eq!(
            entry.map(|e| e.data),
            Some(
                r#"{"did":"did:plc:x","active":false,"status":"takendown","time":"t"}"#.to_owned()
            )
        );
    }
}
