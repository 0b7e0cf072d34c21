//! Event-stream messages: a DAG-CBOR header `{op, t}` followed by the body.
//! subscribeRepos carries `#commit`, `#sync`, `#identity`, `#account` and
//! `#info`; subscribeLabels carries `#labels` and `#info` in the same framing.

use std::collections::BTreeMap;

use crate::cbor::{decode_prefix, encode, encode_into, head, Value};
use crate::{Cid, WireError};

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

/// `com.atproto.label.defs#label`: one labeler's statement about a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub ver: Option<i64>,
    /// The labeler's DID.
    pub src: String,
    /// The subject: an account DID or a record's AT-URI.
    pub uri: String,
    /// When set, the label applies to this version of the record only.
    pub cid: Option<String>,
    pub val: String,
    /// A negation: takes back an earlier label of the same value.
    pub neg: bool,
    pub cts: String,
    pub exp: Option<String>,
    pub sig: Option<Vec<u8>>,
}

impl Label {
    fn to_value(&self, with_sig: bool) -> Value {
        let mut m = BTreeMap::new();
        if let Some(ver) = self.ver {
            m.insert("ver".to_owned(), Value::Integer(ver));
        }
        m.insert("src".to_owned(), Value::from(self.src.as_str()));
        m.insert("uri".to_owned(), Value::from(self.uri.as_str()));
        if let Some(cid) = &self.cid {
            m.insert("cid".to_owned(), Value::from(cid.as_str()));
        }
        m.insert("val".to_owned(), Value::from(self.val.as_str()));
        // A signer leaves `neg` out unless it is true, so the signed bytes do too.
        if self.neg {
            m.insert("neg".to_owned(), Value::Bool(true));
        }
        m.insert("cts".to_owned(), Value::from(self.cts.as_str()));
        if let Some(exp) = &self.exp {
            m.insert("exp".to_owned(), Value::from(exp.as_str()));
        }
        if let (true, Some(sig)) = (with_sig, &self.sig) {
            m.insert("sig".to_owned(), Value::Bytes(sig.clone()));
        }
        Value::Map(m)
    }

    /// The bytes `sig` signs: the label's DAG-CBOR without `sig`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        encode(&self.to_value(false))
    }
}

/// `com.atproto.label.subscribeLabels#labels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub seq: i64,
    pub labels: Vec<Label>,
}

/// A subscribeLabels message.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelEvent {
    Labels(Labels),
    Info(Info),
    Error(ErrorFrame),
}

/// One binary subscribeLabels message.
pub fn encode_label_frame(event: &LabelEvent) -> Vec<u8> {
    match event {
        LabelEvent::Labels(l) => {
            let mut out = encode(&message_header("#labels"));
            let body = Value::map([
                ("seq", Value::Integer(l.seq)),
                (
                    "labels",
                    Value::List(l.labels.iter().map(|x| x.to_value(true)).collect()),
                ),
            ]);
            encode_into(&body, &mut out);
            out
        }
        LabelEvent::Info(i) => encode_frame(&Event::Info(i.clone())),
        LabelEvent::Error(e) => encode_frame(&Event::Error(e.clone())),
    }
}

pub(crate) fn message_header(t: &str) -> Value {
    Value::map([("op", Value::Integer(1)), ("t", Value::from(t))])
}

/// Splits a frame into its header and body values (used by tests and the relay's own checks).
pub fn decode_frame_parts(frame: &[u8]) -> Result<(Value, Value), WireError> {
    let (header, used) = decode_prefix(frame)?;
    let rest = frame.get(used..).ok_or(WireError::Truncated(used))?;
    let (body, _) = decode_prefix(rest)?;
    Ok((header, body))
}
