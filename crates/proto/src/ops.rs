//! Pairs each op of a commit with its record block from the commit's CAR.
//! A missing, corrupt or undecodable block is an error value for that op
//! alone, so one bad op never hides the rest of its commit.

use std::collections::HashMap;

use crate::car::Block;
use crate::cbor::{decode_prefix, Value};
use crate::frame::{Commit, OpAction, RepoOp};
use crate::{Cid, WireError};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpRecordError {
    #[error("op {path:?}: {action} without a record CID")]
    NoCid { path: String, action: &'static str },
    #[error("op {path:?}: record block {cid} is not in the commit's CAR")]
    MissingBlock { path: String, cid: Cid },
    #[error("op {path:?}: record block {cid} does not hash to its CID")]
    CidMismatch { path: String, cid: Cid },
    #[error("op {path:?}: record block {cid} has bytes after its item, from byte {at}")]
    TrailingBytes { path: String, cid: Cid, at: usize },
    #[error("op {path:?}: record block {cid} is not DAG-CBOR: {source}")]
    BadRecord {
        path: String,
        cid: Cid,
        source: WireError,
    },
}

/// What an op carries: a decoded record for creates and updates, nothing for deletes.
pub type OpRecord = Result<Option<Value>, OpRecordError>;

impl Commit {
    /// Each op with its record looked up by CID among `blocks` (the commit's
    /// CAR, already read) and verified against that CID.
    pub fn ops_with_records<'a>(&'a self, blocks: &[Block]) -> Vec<(&'a RepoOp, OpRecord)> {
        let by_cid: HashMap<&Cid, &[u8]> = blocks.iter().map(|(c, d)| (c, d.as_slice())).collect();
        self.ops
            .iter()
            .map(|op| (op, record_for(op, &by_cid)))
            .collect()
    }
}

fn record_for(op: &RepoOp, by_cid: &HashMap<&Cid, &[u8]>) -> OpRecord {
    if op.action == OpAction::Delete {
        return Ok(None);
    }
    let path = || op.path.clone();
    let cid = op.cid.ok_or_else(|| OpRecordError::NoCid {
        path: path(),
        action: op.action.as_str(),
    })?;
    let block = by_cid
        .get(&cid)
        .ok_or_else(|| OpRecordError::MissingBlock { path: path(), cid })?;
    if !cid.verify(block) {
        return Err(OpRecordError::CidMismatch { path: path(), cid });
    }
    match decode_prefix(block) {
        Ok((value, used)) if used == block.len() => Ok(Some(value)),
        Ok((_, used)) => Err(OpRecordError::TrailingBytes {
            path: path(),
            cid,
            at: used,
        }),
        Err(source) => Err(OpRecordError::BadRecord {
            path: path(),
            cid,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::encode;

    fn op(action: OpAction, path: &str, cid: Option<Cid>) -> RepoOp {
        RepoOp {
            action,
            path: path.to_owned(),
            cid,
            prev: None,
        }
    }

    #[test]
    fn finds_verifies_and_reports_per_op() {
        let record = Value::map([("text", Value::from("hi"))]);
        let bytes = encode(&record);
        let good = Cid::for_dag_cbor(&bytes);
        let absent = Cid::for_dag_cbor(b"\xa0");
        let tampered = Cid::for_dag_cbor(b"\x01");
        let blocks = vec![(good, bytes), (tampered, b"\x02".to_vec())];
        let commit = Commit {
            seq: 1,
            repo: "did:plc:a".into(),
            rev: "3k".into(),
            since: None,
            time: "2024-01-01T00:00:00Z".into(),
            commit: good,
            blocks: Vec::new(),
            ops: vec![
                op(OpAction::Create, "app.bsky.feed.post/1", Some(good)),
                op(OpAction::Update, "app.bsky.feed.post/2", Some(absent)),
                op(OpAction::Create, "app.bsky.feed.post/3", Some(tampered)),
                op(OpAction::Delete, "app.bsky.feed.post/4", None),
                op(OpAction::Create, "app.bsky.feed.post/5", None),
            ],
            blobs: Vec::new(),
            too_big: false,
            rebase: false,
            prev_data: None,
        };
        let results = commit.ops_with_records(&blocks);
        assert_eq!(results[0].1, Ok(Some(record)));
        assert!(matches!(
            results[1].1,
            Err(OpRecordError::MissingBlock { .. })
        ));
        assert!(matches!(
            results[2].1,
            Err(OpRecordError::CidMismatch { .. })
        ));
        assert_eq!(results[3].1, Ok(None));
        assert!(matches!(results[4].1, Err(OpRecordError::NoCid { .. })));
    }
}
