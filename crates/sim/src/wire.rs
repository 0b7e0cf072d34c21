//! The encoding side of the wire format that the simulation needs: canonical
//! DAG-CBOR, CIDv1 (sha-256), CAR v1 and subscribeRepos frames, plus a small
//! decoder used to check our own output.
//!
//! It mirrors the `skyhose_proto` API (`Cid`, `cbor::Value`, `car::write_car`,
//! `frame::Event`, `frame::encode_frame`) so that switching to that crate is a
//! change of imports; it exists because the sim must produce bytes on its own.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

const CODEC_DAG_CBOR: u8 = 0x71;
const CODEC_RAW: u8 = 0x55;

/// A CIDv1 with a sha-256 multihash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    codec: u8,
    digest: [u8; 32],
}

impl Cid {
    pub fn for_dag_cbor(bytes: &[u8]) -> Cid {
        Cid {
            codec: CODEC_DAG_CBOR,
            digest: Sha256::digest(bytes).into(),
        }
    }

    pub fn for_raw(bytes: &[u8]) -> Cid {
        Cid {
            codec: CODEC_RAW,
            digest: Sha256::digest(bytes).into(),
        }
    }

    /// The binary form: version 1, codec, sha2-256 (0x12), 32-byte length, digest.
    pub fn to_bytes(&self) -> [u8; 36] {
        let mut out = [0u8; 36];
        out[0] = 0x01;
        out[1] = self.codec;
        out[2] = 0x12;
        out[3] = 0x20;
        out[4..].copy_from_slice(&self.digest);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Cid, WireError> {
        match bytes {
            [0x01, codec @ (CODEC_DAG_CBOR | CODEC_RAW), 0x12, 0x20, digest @ ..]
                if digest.len() == 32 =>
            {
                let mut d = [0u8; 32];
                d.copy_from_slice(digest);
                Ok(Cid {
                    codec: *codec,
                    digest: d,
                })
            }
            _ => Err(WireError::BadCid(bytes.len())),
        }
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b32 = data_encoding::BASE32_NOPAD.encode(&self.to_bytes());
        write!(f, "b{}", b32.to_ascii_lowercase())
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("CBOR input ends early at byte {0}")]
    Truncated(usize),
    #[error("unsupported CBOR item (major {major}, info {info}) at byte {at}")]
    Unsupported { major: u8, info: u8, at: usize },
    #[error("CBOR text at byte {0} is not UTF-8")]
    BadUtf8(usize),
    #[error("CBOR map key at byte {0} is not a string")]
    BadKey(usize),
    #[error("CID link of {0} bytes is not a sha-256 CIDv1")]
    BadCid(usize),
    #[error("CBOR nesting deeper than {0}")]
    TooDeep(usize),
    #[error("CAR file: {0}")]
    BadCar(&'static str),
}

/// The DAG-CBOR data model.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    String(String),
    Bytes(Vec<u8>),
    Link(Cid),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Cid> for Value {
    fn from(c: Cid) -> Self {
        Value::Link(c)
    }
}
impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Value::List(l)
    }
}

/// Canonical DAG-CBOR: shortest integer heads, map keys by length then bytes.
pub fn encode(value: &Value) -> Vec<u8> {
    // Most records fit; growing from a tiny buffer costs several reallocations.
    let mut out = Vec::with_capacity(512);
    encode_into(value, &mut out);
    out
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Integer(i) if *i >= 0 => head(out, 0, *i as u64),
        Value::Integer(i) => head(out, 1, (-1 - *i) as u64),
        Value::String(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Link(cid) => {
            head(out, 6, 42);
            head(out, 2, 37);
            out.push(0x00);
            out.extend_from_slice(&cid.to_bytes());
        }
        Value::List(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Map(map) => {
            head(out, 5, map.len() as u64);
            // The map iterates in byte order; canonical order is by length first, and a
            // stable sort by length of the byte-ordered keys gives exactly that.
            const SMALL: usize = 16;
            if map.len() <= SMALL {
                let mut entries: [(&str, &Value); SMALL] = [("", &Value::Null); SMALL];
                for (slot, (k, v)) in entries.iter_mut().zip(map) {
                    *slot = (k.as_str(), v);
                }
                let entries = entries.get_mut(..map.len()).unwrap_or_default();
                entries.sort_by_key(|(k, _)| k.len());
                encode_entries(entries.iter().copied(), out);
            } else {
                let mut entries: Vec<(&str, &Value)> =
                    map.iter().map(|(k, v)| (k.as_str(), v)).collect();
                entries.sort_by_key(|(k, _)| k.len());
                encode_entries(entries.into_iter(), out);
            }
        }
    }
}

fn encode_entries<'a>(entries: impl Iterator<Item = (&'a str, &'a Value)>, out: &mut Vec<u8>) {
    for (k, v) in entries {
        head(out, 3, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        encode_into(v, out);
    }
}

const MAX_DEPTH: usize = 64;

/// Decodes one DAG-CBOR item at the start of `input`; returns it and the bytes used.
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), WireError> {
    let mut pos = 0;
    let v = decode_at(input, &mut pos, 0)?;
    Ok((v, pos))
}

fn read_head(input: &[u8], pos: &mut usize) -> Result<(u8, u8, u64), WireError> {
    let at = *pos;
    let first = *input.get(at).ok_or(WireError::Truncated(at))?;
    let (major, info) = (first >> 5, first & 0x1f);
    let width = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return Err(WireError::Unsupported { major, info, at }),
    };
    let bytes = input
        .get(at + 1..at + 1 + width)
        .ok_or(WireError::Truncated(at))?;
    let n = if width == 0 {
        info as u64
    } else {
        bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)
    };
    *pos = at + 1 + width;
    Ok((major, info, n))
}

fn take<'a>(input: &'a [u8], pos: &mut usize, n: u64) -> Result<&'a [u8], WireError> {
    let start = *pos;
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| start.checked_add(n))
        .ok_or(WireError::Truncated(start))?;
    let slice = input.get(start..end).ok_or(WireError::Truncated(start))?;
    *pos = end;
    Ok(slice)
}

fn decode_at(input: &[u8], pos: &mut usize, depth: usize) -> Result<Value, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep(MAX_DEPTH));
    }
    let at = *pos;
    let (major, info, n) = read_head(input, pos)?;
    Ok(match major {
        0 => Value::Integer(i64::try_from(n).map_err(|_| WireError::Unsupported {
            major,
            info,
            at,
        })?),
        1 => Value::Integer(
            -1 - i64::try_from(n).map_err(|_| WireError::Unsupported { major, info, at })?,
        ),
        2 => Value::Bytes(take(input, pos, n)?.to_vec()),
        3 => Value::String(
            String::from_utf8(take(input, pos, n)?.to_vec()).map_err(|_| WireError::BadUtf8(at))?,
        ),
        4 => {
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(decode_at(input, pos, depth + 1)?);
            }
            Value::List(items)
        }
        5 => {
            let mut map = BTreeMap::new();
            for _ in 0..n {
                let key_at = *pos;
                let Value::String(k) = decode_at(input, pos, depth + 1)? else {
                    return Err(WireError::BadKey(key_at));
                };
                map.insert(k, decode_at(input, pos, depth + 1)?);
            }
            Value::Map(map)
        }
        6 if n == 42 => match decode_at(input, pos, depth + 1)? {
            Value::Bytes(b) => match b.split_first() {
                Some((0, cid)) => Value::Link(Cid::from_bytes(cid)?),
                _ => return Err(WireError::BadCid(b.len())),
            },
            _ => return Err(WireError::Unsupported { major, info, at }),
        },
        7 => match info {
            20 => Value::Bool(false),
            21 => Value::Bool(true),
            22 => Value::Null,
            _ => return Err(WireError::Unsupported { major, info, at }),
        },
        _ => return Err(WireError::Unsupported { major, info, at }),
    })
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(input: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *input
            .get(*pos)
            .ok_or(WireError::BadCar("varint runs past the end"))?;
        *pos += 1;
        n |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(WireError::BadCar("varint longer than 64 bits"))
}

/// A CAR block: its CID and bytes.
pub type Block = (Cid, Vec<u8>);

/// A CAR v1 file with the given roots and blocks, in order.
pub fn write_car(roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let header = encode(&Value::map([
        (
            "roots",
            Value::List(roots.iter().map(|c| Value::Link(*c)).collect()),
        ),
        ("version", Value::Integer(1)),
    ]));
    let mut out =
        Vec::with_capacity(header.len() + blocks.iter().map(|b| b.1.len() + 40).sum::<usize>() + 2);
    varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    for (cid, data) in blocks {
        varint(&mut out, (36 + data.len()) as u64);
        out.extend_from_slice(&cid.to_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Reads a CAR v1 file into its roots and blocks (CIDs are not re-verified).
pub fn read_car(input: &[u8]) -> Result<(Vec<Cid>, Vec<Block>), WireError> {
    let mut pos = 0;
    let header_len = read_varint(input, &mut pos)?;
    let header =
        take(input, &mut pos, header_len).map_err(|_| WireError::BadCar("header truncated"))?;
    let (header, _) = decode_prefix(header)?;
    let roots = match header.get("roots") {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Link(c) => Some(*c),
                _ => None,
            })
            .collect(),
        _ => return Err(WireError::BadCar("header has no roots list")),
    };
    let mut blocks = Vec::new();
    while pos < input.len() {
        let len = read_varint(input, &mut pos)?;
        let block = take(input, &mut pos, len).map_err(|_| WireError::BadCar("block truncated"))?;
        let (cid_bytes, data) = block
            .split_at_checked(36)
            .ok_or(WireError::BadCar("block shorter than a CID"))?;
        blocks.push((Cid::from_bytes(cid_bytes)?, data.to_vec()));
    }
    Ok((roots, blocks))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpAction {
    Create,
    Update,
    Delete,
}

impl OpAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OpAction::Create => "create",
            OpAction::Update => "update",
            OpAction::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RepoOp {
    pub action: OpAction,
    pub path: String,
    pub cid: Option<Cid>,
    pub prev: Option<Cid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub seq: i64,
    pub repo: String,
    pub rev: String,
    pub since: Option<String>,
    pub time: String,
    pub commit: Cid,
    pub blocks: Vec<u8>,
    pub ops: Vec<RepoOp>,
    pub blobs: Vec<Cid>,
    pub too_big: bool,
    pub rebase: bool,
    pub prev_data: Option<Cid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub seq: i64,
    pub did: String,
    pub rev: String,
    pub blocks: Vec<u8>,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub seq: i64,
    pub did: String,
    pub time: String,
    pub handle: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub seq: i64,
    pub did: String,
    pub time: String,
    pub active: bool,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub name: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFrame {
    pub error: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Commit(Commit),
    Sync(Sync),
    Identity(Identity),
    Account(Account),
    Info(Info),
    Error(ErrorFrame),
}

impl Event {
    /// The relay sequence number, for the event kinds that carry one.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Event::Commit(c) => Some(c.seq),
            Event::Sync(s) => Some(s.seq),
            Event::Identity(i) => Some(i.seq),
            Event::Account(a) => Some(a.seq),
            Event::Info(_) | Event::Error(_) => None,
        }
    }
}

/// One binary subscribeRepos message: the header `{op, t}` followed by the body.
pub fn encode_frame(event: &Event) -> Vec<u8> {
    let (header, body) = match event {
        Event::Commit(c) => {
            let mut out = Vec::with_capacity(c.blocks.len() + 384);
            encode_into(&message_header("#commit"), &mut out);
            encode_commit_body(c, &mut out);
            return out;
        }
        Event::Sync(s) => (
            message_header("#sync"),
            Value::map([
                ("seq", Value::Integer(s.seq)),
                ("did", Value::String(s.did.clone())),
                ("blocks", Value::Bytes(s.blocks.clone())),
                ("rev", Value::String(s.rev.clone())),
                ("time", Value::String(s.time.clone())),
            ]),
        ),
        Event::Identity(i) => {
            let mut m = BTreeMap::new();
            m.insert("seq".to_owned(), Value::Integer(i.seq));
            m.insert("did".to_owned(), Value::String(i.did.clone()));
            m.insert("time".to_owned(), Value::String(i.time.clone()));
            if let Some(h) = &i.handle {
                m.insert("handle".to_owned(), Value::String(h.clone()));
            }
            (message_header("#identity"), Value::Map(m))
        }
        Event::Account(a) => {
            let mut m = BTreeMap::new();
            m.insert("seq".to_owned(), Value::Integer(a.seq));
            m.insert("did".to_owned(), Value::String(a.did.clone()));
            m.insert("time".to_owned(), Value::String(a.time.clone()));
            m.insert("active".to_owned(), Value::Bool(a.active));
            if let Some(s) = &a.status {
                m.insert("status".to_owned(), Value::String(s.clone()));
            }
            (message_header("#account"), Value::Map(m))
        }
        Event::Info(i) => {
            let mut m = BTreeMap::new();
            m.insert("name".to_owned(), Value::String(i.name.clone()));
            if let Some(msg) = &i.message {
                m.insert("message".to_owned(), Value::String(msg.clone()));
            }
            (message_header("#info"), Value::Map(m))
        }
        Event::Error(e) => {
            let mut m = BTreeMap::new();
            m.insert("error".to_owned(), Value::String(e.error.clone()));
            if let Some(msg) = &e.message {
                m.insert("message".to_owned(), Value::String(msg.clone()));
            }
            (Value::map([("op", Value::Integer(-1))]), Value::Map(m))
        }
    };
    let mut out = encode(&header);
    encode_into(&body, &mut out);
    out
}

fn key(out: &mut Vec<u8>, k: &str) {
    head(out, 3, k.len() as u64);
    out.extend_from_slice(k.as_bytes());
}

fn link(out: &mut Vec<u8>, cid: &Cid) {
    encode_into(&Value::Link(*cid), out);
}

/// The commit body written directly in canonical key order (length, then bytes),
/// because commits are most of the stream and copying `blocks` into a value tree
/// would dominate generation time.
fn encode_commit_body(c: &Commit, out: &mut Vec<u8>) {
    head(out, 5, if c.prev_data.is_some() { 12 } else { 11 });
    key(out, "ops");
    head(out, 4, c.ops.len() as u64);
    for op in &c.ops {
        head(out, 5, if op.prev.is_some() { 4 } else { 3 });
        key(out, "cid");
        match &op.cid {
            Some(cid) => link(out, cid),
            None => out.push(0xf6),
        }
        key(out, "path");
        key(out, &op.path);
        if let Some(prev) = &op.prev {
            key(out, "prev");
            link(out, prev);
        }
        key(out, "action");
        key(out, op.action.as_str());
    }
    key(out, "rev");
    key(out, &c.rev);
    key(out, "seq");
    encode_into(&Value::Integer(c.seq), out);
    key(out, "repo");
    key(out, &c.repo);
    key(out, "time");
    key(out, &c.time);
    key(out, "blobs");
    head(out, 4, c.blobs.len() as u64);
    for blob in &c.blobs {
        link(out, blob);
    }
    key(out, "since");
    match &c.since {
        Some(since) => key(out, since),
        None => out.push(0xf6),
    }
    key(out, "blocks");
    head(out, 2, c.blocks.len() as u64);
    out.extend_from_slice(&c.blocks);
    key(out, "commit");
    link(out, &c.commit);
    key(out, "rebase");
    encode_into(&Value::Bool(c.rebase), out);
    key(out, "tooBig");
    encode_into(&Value::Bool(c.too_big), out);
    if let Some(prev_data) = &c.prev_data {
        key(out, "prevData");
        link(out, prev_data);
    }
}

fn message_header(t: &str) -> Value {
    Value::map([("op", Value::Integer(1)), ("t", Value::from(t))])
}

/// Splits a frame into its header and body values (used by tests and the relay's own checks).
pub fn decode_frame_parts(frame: &[u8]) -> Result<(Value, Value), WireError> {
    let (header, used) = decode_prefix(frame)?;
    let rest = frame.get(used..).ok_or(WireError::Truncated(used))?;
    let (body, _) = decode_prefix(rest)?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_of_empty_map_matches_known_value() {
        // {} in DAG-CBOR is 0xa0; its CIDv1 is a well-known constant.
        let cid = Cid::for_dag_cbor(&encode(&Value::Map(BTreeMap::new())));
        assert_eq!(
            cid.to_string(),
            "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
        );
    }

    #[test]
    fn map_keys_sort_by_length_first() {
        let v = Value::map([
            ("bb", Value::Integer(1)),
            ("a", Value::Integer(2)),
            ("c", Value::Integer(3)),
        ]);
        assert_eq!(
            encode(&v),
            vec![0xa3, 0x61, b'a', 2, 0x61, b'c', 3, 0x62, b'b', b'b', 1]
        );
    }

    #[test]
    fn round_trips_values() {
        let v = Value::map([
            ("n", Value::Integer(-300)),
            ("big", Value::Integer(1 << 40)),
            ("l", Value::Link(Cid::for_raw(b"x"))),
            ("b", Value::Bytes(vec![1, 2, 3])),
            ("s", Value::from("héllo")),
            ("x", Value::List(vec![Value::Null, Value::Bool(true)])),
        ]);
        let bytes = encode(&v);
        assert_eq!(decode_prefix(&bytes), Ok((v, bytes.len())));
    }

    #[test]
    fn direct_commit_body_equals_value_tree_encoding() {
        let cid = Cid::for_raw(b"c");
        for (since, prev_data, prev) in [
            (None, None, None),
            (Some("3l2".to_owned()), Some(cid), Some(cid)),
        ] {
            let c = Commit {
                seq: 300,
                repo: "did:plc:abc".into(),
                rev: "3l3".into(),
                since: since.clone(),
                time: "2024-11-01T00:00:00.000Z".into(),
                commit: cid,
                blocks: vec![7; 30],
                ops: vec![RepoOp {
                    action: OpAction::Delete,
                    path: "app.bsky.feed.like/3l".into(),
                    cid: None,
                    prev,
                }],
                blobs: vec![],
                too_big: false,
                rebase: false,
                prev_data,
            };
            let mut op = BTreeMap::new();
            op.insert("action".to_owned(), Value::from("delete"));
            op.insert("path".to_owned(), Value::from("app.bsky.feed.like/3l"));
            op.insert("cid".to_owned(), Value::Null);
            if let Some(p) = prev {
                op.insert("prev".to_owned(), Value::Link(p));
            }
            let mut m = BTreeMap::new();
            m.insert("seq".to_owned(), Value::Integer(300));
            m.insert("rebase".to_owned(), Value::Bool(false));
            m.insert("tooBig".to_owned(), Value::Bool(false));
            m.insert("repo".to_owned(), Value::from("did:plc:abc"));
            m.insert("commit".to_owned(), Value::Link(cid));
            m.insert("rev".to_owned(), Value::from("3l3"));
            m.insert("since".to_owned(), since.map_or(Value::Null, Value::String));
            m.insert("blocks".to_owned(), Value::Bytes(vec![7; 30]));
            m.insert("ops".to_owned(), Value::List(vec![Value::Map(op)]));
            m.insert("blobs".to_owned(), Value::List(vec![]));
            if let Some(p) = prev_data {
                m.insert("prevData".to_owned(), Value::Link(p));
            }
            m.insert("time".to_owned(), Value::from("2024-11-01T00:00:00.000Z"));
            let mut expected = encode(&message_header("#commit"));
            encode_into(&Value::Map(m), &mut expected);
            assert_eq!(encode_frame(&Event::Commit(c)), expected);
        }
    }

    #[test]
    fn car_round_trips() {
        let block = encode(&Value::from("hi"));
        let cid = Cid::for_dag_cbor(&block);
        let car = write_car(&[cid], &[(cid, block.clone())]);
        assert_eq!(read_car(&car), Ok((vec![cid], vec![(cid, block)])));
    }
}
