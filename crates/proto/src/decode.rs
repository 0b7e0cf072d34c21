//! One binary subscribeRepos or subscribeLabels message into a typed event.
//! Frames that are not well formed are errors that name what was wrong,
//! never panics.

use crate::cbor::Value;
use crate::frame::{
    decode_frame_parts, Account, Commit, ErrorFrame, Event, Identity, Info, Label, LabelEvent,
    Labels, OpAction, RepoOp, Sync,
};
use crate::Cid;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not DAG-CBOR: {0}")]
    Cbor(#[from] crate::WireError),
    #[error("frame header has no valid `op`")]
    BadHeader,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("frame of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("commit with {count} ops is over the lexicon's {limit}-op limit")]
    TooManyOps { count: usize, limit: usize },
    #[error("{kind} body: field `{field}` missing or of the wrong type")]
    BadField {
        kind: &'static str,
        field: &'static str,
    },
}

/// A decoded frame: an event, or a message type this client does not know
/// (skipped, as the spec asks of clients).
// Returned by value and matched at once; boxing would add an allocation per frame.
#[allow(clippy::large_enum_variant)]
pub enum Decoded {
    Event(Event),
    Unknown(String),
}

struct Body<'a> {
    kind: &'static str,
    value: &'a Value,
}

impl<'a> Body<'a> {
    fn bad(&self, field: &'static str) -> FrameError {
        FrameError::BadField {
            kind: self.kind,
            field,
        }
    }
    fn get(&self, field: &'static str) -> Option<&'a Value> {
        self.value.get(field).filter(|v| !matches!(v, Value::Null))
    }
    fn string(&self, field: &'static str) -> Result<String, FrameError> {
        self.opt_string(field)?.ok_or_else(|| self.bad(field))
    }
    fn opt_string(&self, field: &'static str) -> Result<Option<String>, FrameError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(field)),
        }
    }
    fn int(&self, field: &'static str) -> Result<i64, FrameError> {
        self.get(field)
            .and_then(Value::as_i64)
            .ok_or_else(|| self.bad(field))
    }
    fn bool_or(&self, field: &'static str, default: bool) -> Result<bool, FrameError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.bad(field)),
        }
    }
    fn opt_link(&self, field: &'static str) -> Result<Option<Cid>, FrameError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Link(c)) => Ok(Some(*c)),
            Some(_) => Err(self.bad(field)),
        }
    }
}

/// Moves the `blocks` bytes out of a body: they are most of a frame, and
/// copying them would cost more than the rest of the decoding.
fn take_blocks(body: &mut Value, kind: &'static str) -> Result<Vec<u8>, FrameError> {
    let bad = FrameError::BadField {
        kind,
        field: "blocks",
    };
    let Value::Map(map) = body else {
        return Err(bad);
    };
    match map.remove("blocks") {
        Some(Value::Bytes(blocks)) => Ok(blocks),
        _ => Err(bad),
    }
}

/// Limits for `decode_with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    pub max_frame_bytes: usize,
}

impl Default for DecodeOptions {
    /// Relays cap a commit's blocks at 2 MB; 5 MiB leaves room for the rest
    /// of the frame and for relays that are more generous.
    fn default() -> Self {
        DecodeOptions {
            max_frame_bytes: 5 * 1024 * 1024,
        }
    }
}

/// `decode`, refusing frames over the size limit before reading them.
pub fn decode_with(frame: &[u8], opts: &DecodeOptions) -> Result<Decoded, FrameError> {
    if frame.len() > opts.max_frame_bytes {
        return Err(FrameError::TooLarge {
            len: frame.len(),
            limit: opts.max_frame_bytes,
        });
    }
    decode(frame)
}

/// A frame's header: an error message, or a message of type `t`.
enum Header {
    Error(ErrorFrame),
    Message(String),
}

fn header(header: &Value, body: &Value) -> Result<Header, FrameError> {
    let op = header
        .get("op")
        .and_then(Value::as_i64)
        .ok_or(FrameError::BadHeader)?;
    if op == -1 {
        let b = Body {
            kind: "error",
            value: body,
        };
        return Ok(Header::Error(ErrorFrame {
            error: b.string("error")?,
            message: b.opt_string("message")?,
        }));
    }
    if op != 1 {
        return Err(FrameError::BadHeader);
    }
    header
        .get("t")
        .and_then(Value::as_str)
        .map(|t| Header::Message(t.to_owned()))
        .ok_or(FrameError::BadHeader)
}

fn info(body: &Value) -> Result<Info, FrameError> {
    let b = Body {
        kind: "info",
        value: body,
    };
    Ok(Info {
        name: b.string("name")?,
        message: b.opt_string("message")?,
    })
}

pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let (head, mut body) = decode_frame_parts(frame)?;
    let t = match header(&head, &body)? {
        Header::Error(e) => return Ok(Decoded::Event(Event::Error(e))),
        Header::Message(t) => t,
    };
    let event = match t.as_str() {
        "#commit" => {
            let blocks = take_blocks(&mut body, "commit")?;
            Event::Commit(commit(
                &Body {
                    kind: "commit",
                    value: &body,
                },
                blocks,
            )?)
        }
        "#identity" => {
            let b = Body {
                kind: "identity",
                value: &body,
            };
            Event::Identity(Identity {
                seq: b.int("seq")?,
                did: b.string("did")?,
                time: b.string("time")?,
                handle: b.opt_string("handle")?,
            })
        }
        "#account" => {
            let b = Body {
                kind: "account",
                value: &body,
            };
            Event::Account(Account {
                seq: b.int("seq")?,
                did: b.string("did")?,
                time: b.string("time")?,
                active: b.bool_or("active", true)?,
                status: b.opt_string("status")?,
            })
        }
        "#sync" => {
            let blocks = take_blocks(&mut body, "sync")?;
            let b = Body {
                kind: "sync",
                value: &body,
            };
            Event::Sync(Sync {
                seq: b.int("seq")?,
                did: b.string("did")?,
                rev: b.string("rev")?,
                blocks,
                time: b.string("time")?,
            })
        }
        "#info" => Event::Info(info(&body)?),
        _ => return Ok(Decoded::Unknown(t)),
    };
    Ok(Decoded::Event(event))
}

/// A decoded subscribeLabels frame, or a message type this client does not know.
pub enum DecodedLabels {
    Event(LabelEvent),
    Unknown(String),
}

/// One subscribeLabels message. Labels are read as sent; whether they are
/// well formed and signed is the caller's check.
pub fn decode_labels(frame: &[u8]) -> Result<DecodedLabels, FrameError> {
    let (head, body) = decode_frame_parts(frame)?;
    let t = match header(&head, &body)? {
        Header::Error(e) => return Ok(DecodedLabels::Event(LabelEvent::Error(e))),
        Header::Message(t) => t,
    };
    let event = match t.as_str() {
        "#labels" => {
            let b = Body {
                kind: "labels",
                value: &body,
            };
            let Some(Value::List(raw)) = b.get("labels") else {
                return Err(b.bad("labels"));
            };
            let labels = raw.iter().map(label).collect::<Result<_, _>>()?;
            LabelEvent::Labels(Labels {
                seq: b.int("seq")?,
                labels,
            })
        }
        "#info" => LabelEvent::Info(info(&body)?),
        _ => return Ok(DecodedLabels::Unknown(t)),
    };
    Ok(DecodedLabels::Event(event))
}

fn label(value: &Value) -> Result<Label, FrameError> {
    let b = Body {
        kind: "label",
        value,
    };
    let ver = match b.get("ver") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| b.bad("ver"))?),
    };
    let sig = match b.get("sig") {
        None => None,
        Some(Value::Bytes(s)) => Some(s.clone()),
        Some(_) => return Err(b.bad("sig")),
    };
    Ok(Label {
        ver,
        src: b.string("src")?,
        uri: b.string("uri")?,
        cid: b.opt_string("cid")?,
        val: b.string("val")?,
        neg: b.bool_or("neg", false)?,
        cts: b.string("cts")?,
        exp: b.opt_string("exp")?,
        sig,
    })
}

/// `com.atproto.sync.subscribeRepos#commit` caps `ops` at 200; relays
/// split larger writes into several commits, so more is a malformed frame.
pub const MAX_OPS_PER_COMMIT: usize = 200;

fn commit(b: &Body<'_>, blocks: Vec<u8>) -> Result<Commit, FrameError> {
    let Some(Value::List(raw_ops)) = b.get("ops") else {
        return Err(b.bad("ops"));
    };
    if raw_ops.len() > MAX_OPS_PER_COMMIT {
        return Err(FrameError::TooManyOps {
            count: raw_ops.len(),
            limit: MAX_OPS_PER_COMMIT,
        });
    }
    let mut ops = Vec::with_capacity(raw_ops.len());
    for raw in raw_ops {
        let o = Body {
            kind: "commit op",
            value: raw,
        };
        let action = match o.get("action").and_then(Value::as_str) {
            Some("create") => OpAction::Create,
            Some("update") => OpAction::Update,
            Some("delete") => OpAction::Delete,
            _ => return Err(o.bad("action")),
        };
        ops.push(RepoOp {
            action,
            path: o.string("path")?,
            cid: o.opt_link("cid")?,
            prev: o.opt_link("prev")?,
        });
    }
    let blobs = match b.get("blobs") {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Link(c) => Some(*c),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Commit {
        seq: b.int("seq")?,
        repo: b.string("repo")?,
        rev: b.string("rev")?,
        since: b.opt_string("since")?,
        time: b.string("time")?,
        commit: b.opt_link("commit")?.ok_or_else(|| b.bad("commit"))?,
        blocks,
        ops,
        blobs,
        too_big: b.bool_or("tooBig", false)?,
        rebase: b.bool_or("rebase", false)?,
        prev_data: b.opt_link("prevData")?,
    })
}

/// The seq and repo of a frame that failed to decode, when they can be read,
/// so the log names which event was skipped.
pub fn best_effort_seq_repo(frame: &[u8]) -> (Option<i64>, Option<String>) {
    match decode_frame_parts(frame) {
        Ok((_, body)) => (
            body.get("seq").and_then(Value::as_i64),
            body.get("repo")
                .or_else(|| body.get("did"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;
    use crate::crypto::{Curve, SigningKey};
    use crate::frame::encode_label_frame;

    #[test]
    fn labels_round_trip_and_their_signature_covers_all_but_sig() {
        let key = SigningKey::from_bytes(Curve::K256, &[7; 32]).unwrap();
        let mut label = Label {
            ver: Some(1),
            src: "did:plc:labeler".into(),
            uri: "at://did:plc:abc/app.bsky.feed.post/3l2".into(),
            cid: None,
            val: "spam".into(),
            neg: true,
            cts: "2026-01-01T00:00:00.000Z".into(),
            exp: Some("2027-01-01T00:00:00.000Z".into()),
            sig: None,
        };
        label.sig = Some(key.sign(&label.signing_bytes()).to_vec());
        let event = LabelEvent::Labels(Labels {
            seq: 9,
            labels: vec![label.clone()],
        });
        let Ok(DecodedLabels::Event(decoded)) = decode_labels(&encode_label_frame(&event)) else {
            panic!("not decoded");
        };
        assert_eq!(decoded, event);
        let sig = label.sig.clone().unwrap();
        assert!(key.public_key().verify(&label.signing_bytes(), &sig));
        label.val = "other".into();
        assert!(!key.public_key().verify(&label.signing_bytes(), &sig));
        // A subscribeRepos message is not a label message, and the reverse.
        let info = LabelEvent::Info(Info {
            name: "OutdatedCursor".into(),
            message: None,
        });
        assert!(matches!(
            decode_labels(&encode_label_frame(&info)),
            Ok(DecodedLabels::Event(LabelEvent::Info(_)))
        ));
        assert!(matches!(
            decode(&encode_label_frame(&event)),
            Ok(Decoded::Unknown(t)) if t == "#labels"
        ));
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn frames_over_the_limit_are_refused_by_size() {
        let opts = DecodeOptions { max_frame_bytes: 4 };
        assert!(matches!(
            decode_with(&[0; 5], &opts),
            Err(FrameError::TooLarge { len: 5, limit: 4 })
        ));
        assert!(matches!(
            decode_with(&[0; 4], &opts),
            Err(FrameError::Cbor(_)) | Err(FrameError::BadHeader)
        ));
    }

    #[test]
    fn commits_over_the_op_limit_are_refused() {
        use crate::frame::{encode_frame, Commit, Event, OpAction, RepoOp};
        let commit = |ops: usize| {
            encode_frame(&Event::Commit(Commit {
                seq: 1,
                repo: "did:plc:abc".into(),
                rev: "3kabc".into(),
                since: None,
                time: "2026-01-01T00:00:00Z".into(),
                commit: Cid::for_dag_cbor(b"x"),
                blocks: Vec::new(),
                ops: (0..ops)
                    .map(|i| RepoOp {
                        action: OpAction::Delete,
                        path: format!("app.bsky.feed.like/{i}"),
                        cid: None,
                        prev: None,
                    })
                    .collect(),
                blobs: Vec::new(),
                too_big: false,
                rebase: false,
                prev_data: None,
            }))
        };
        assert!(decode(&commit(MAX_OPS_PER_COMMIT)).is_ok());
        assert!(matches!(
            decode(&commit(MAX_OPS_PER_COMMIT + 1)),
            Err(FrameError::TooManyOps {
                count: 201,
                limit: 200
            })
        ));
    }
}
