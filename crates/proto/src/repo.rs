//! Repositories: signed commits, full repo CARs (`getRepo`) read and
//! verified into records, and the checks of a firehose `#commit` (signature,
//! sync 1.1 inversion against `prevData`).

use std::collections::HashMap;

use crate::car::{read_car, read_car_with, write_car, CarOptions};
use crate::cbor::{decode_prefix, encode, Value};
use crate::crypto::{PublicKey, SigningKey};
use crate::frame;
use crate::mst::{invert_ops, walk, Mst, MstError};
use crate::{Cid, WireError};

/// The repository format version this crate writes.
pub const REPO_VERSION: i64 = 3;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RepoError {
    #[error("repo CAR: {0}")]
    BadCar(WireError),
    #[error("repo CAR has {0} roots; a repo has exactly one, its commit")]
    BadRoots(usize),
    #[error("repo is larger than the limit: {what} over {limit}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("commit block {0} is not in the CAR")]
    MissingCommit(Cid),
    #[error("commit block {0} does not hash to its CID")]
    BadCommitHash(Cid),
    #[error("commit block is not a commit: {0}")]
    NotACommit(&'static str),
    #[error("commit is for {found:?}, expected {expected:?}")]
    WrongDid { expected: String, found: String },
    #[error("commit rev {found:?} differs from the event's {expected:?}")]
    WrongRev { expected: String, found: String },
    #[error("commit signature does not verify against the account's key")]
    BadSignature,
    #[error("{0}")]
    Mst(#[from] MstError),
    #[error("record {key:?}: block {cid} is not in the CAR")]
    MissingRecord { key: String, cid: Cid },
    #[error("record {key:?}: block does not hash to {cid}")]
    BadRecordHash { key: String, cid: Cid },
    #[error("record key {key:?} is not an NSID collection and a record key")]
    BadRecordKey { key: String },
    #[error("commit's ops undone give data root {computed}, but prevData is {expected}")]
    PrevDataMismatch { expected: Cid, computed: Cid },
}

impl RepoError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RepoError::BadCar(_) => "bad_car",
            RepoError::BadRoots(_) => "bad_roots",
            RepoError::TooLarge { .. } => "too_large",
            RepoError::MissingCommit(_) => "missing_commit",
            RepoError::BadCommitHash(_) => "bad_commit_hash",
            RepoError::NotACommit(_) => "not_a_commit",
            RepoError::WrongDid { .. } => "wrong_did",
            RepoError::WrongRev { .. } => "wrong_rev",
            RepoError::BadSignature => "bad_signature",
            RepoError::Mst(e) => e.reason(),
            RepoError::MissingRecord { .. } => "missing_record",
            RepoError::BadRecordHash { .. } => "bad_record_hash",
            RepoError::BadRecordKey { .. } => "bad_record_key",
            RepoError::PrevDataMismatch { .. } => "prev_data_mismatch",
        }
    }
}

/// A repository commit object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub did: String,
    pub version: i64,
    /// The MST root.
    pub data: Cid,
    pub rev: String,
    pub prev: Option<Cid>,
    pub sig: Vec<u8>,
}

impl Commit {
    pub fn decode(bytes: &[u8]) -> Result<Commit, RepoError> {
        let (value, used) =
            decode_prefix(bytes).map_err(|_| RepoError::NotACommit("not DAG-CBOR"))?;
        if used != bytes.len() {
            return Err(RepoError::NotACommit("bytes after the commit"));
        }
        let Some(Value::String(did)) = value.get("did") else {
            return Err(RepoError::NotACommit("no `did` string"));
        };
        let Some(version @ (2 | 3)) = value.get("version").and_then(Value::as_i64) else {
            return Err(RepoError::NotACommit("`version` is not 2 or 3"));
        };
        let Some(Value::Link(data)) = value.get("data") else {
            return Err(RepoError::NotACommit("no `data` link"));
        };
        let Some(Value::String(rev)) = value.get("rev") else {
            return Err(RepoError::NotACommit("no `rev` string"));
        };
        let prev = match value.get("prev") {
            Some(Value::Link(c)) => Some(*c),
            Some(Value::Null) | None => None,
            Some(_) => return Err(RepoError::NotACommit("`prev` is neither a link nor null")),
        };
        let Some(Value::Bytes(sig)) = value.get("sig") else {
            return Err(RepoError::NotACommit("no `sig` bytes"));
        };
        Ok(Commit {
            did: did.clone(),
            version,
            data: *data,
            rev: rev.clone(),
            prev,
            sig: sig.clone(),
        })
    }

    fn value(&self, sig: bool) -> Value {
        let mut fields = vec![
            ("did", Value::String(self.did.clone())),
            ("version", Value::Integer(self.version)),
            ("data", Value::Link(self.data)),
            ("rev", Value::String(self.rev.clone())),
            ("prev", self.prev.map_or(Value::Null, Value::Link)),
        ];
        if sig {
            fields.push(("sig", Value::Bytes(self.sig.clone())));
        }
        Value::map(fields)
    }

    /// The DAG-CBOR of the commit without `sig`: what the signature covers.
    pub fn unsigned_bytes(&self) -> Vec<u8> {
        encode(&self.value(false))
    }

    /// The signed commit block.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&self.value(true))
    }

    pub fn verify(&self, key: &PublicKey) -> bool {
        key.verify(&self.unsigned_bytes(), &self.sig)
    }

    /// A version 3 commit signed with `key`: its CID, block and value.
    pub fn signed(
        did: &str,
        data: Cid,
        rev: &str,
        prev: Option<Cid>,
        key: &SigningKey,
    ) -> (Cid, Vec<u8>, Commit) {
        let mut commit = Commit {
            did: did.to_owned(),
            version: REPO_VERSION,
            data,
            rev: rev.to_owned(),
            prev,
            sig: Vec::new(),
        };
        commit.sig = key.sign(&commit.unsigned_bytes()).to_vec();
        let bytes = commit.to_bytes();
        (Cid::for_dag_cbor(&bytes), bytes, commit)
    }
}

/// One record of a verified repo.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoRecord {
    pub collection: String,
    pub rkey: String,
    pub cid: Cid,
    /// The record's DAG-CBOR block.
    pub block: Vec<u8>,
}

/// A repo CAR read and verified: its commit and every record, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRepo {
    pub commit: Commit,
    pub commit_cid: Cid,
    pub records: Vec<RepoRecord>,
}

/// Bounds on a repo CAR, checked before the work they bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoLimits {
    pub max_car_bytes: usize,
    pub max_blocks: usize,
    pub max_records: usize,
}

impl Default for RepoLimits {
    /// Above the largest repos of the network (a few million records), far
    /// below what would exhaust a backfill worker's memory.
    fn default() -> Self {
        RepoLimits {
            max_car_bytes: 2 << 30,
            max_blocks: 10_000_000,
            max_records: 5_000_000,
        }
    }
}

/// Reads a full repo CAR (`com.atproto.sync.getRepo`) and verifies it: one
/// root, the commit; the commit's `did` is `expected_did`; its signature
/// against `key` when given; the MST (see `mst::walk`, which hashes every
/// node); every record block present and hashing to its CID. Each block is
/// hashed once, here or in the walk, not by the CAR reader; blocks nothing
/// links to are ignored.
pub fn read_repo(
    car: &[u8],
    expected_did: &str,
    key: Option<&PublicKey>,
    limits: &RepoLimits,
) -> Result<VerifiedRepo, RepoError> {
    if car.len() > limits.max_car_bytes {
        return Err(RepoError::TooLarge {
            what: "CAR bytes",
            limit: limits.max_car_bytes,
        });
    }
    let (roots, blocks) = read_car(car).map_err(RepoError::BadCar)?;
    if blocks.len() > limits.max_blocks {
        return Err(RepoError::TooLarge {
            what: "blocks",
            limit: limits.max_blocks,
        });
    }
    let [commit_cid] = roots[..] else {
        return Err(RepoError::BadRoots(roots.len()));
    };
    let by_cid: HashMap<Cid, &[u8]> = blocks.iter().map(|(c, d)| (*c, d.as_slice())).collect();
    let commit_bytes = by_cid
        .get(&commit_cid)
        .ok_or(RepoError::MissingCommit(commit_cid))?;
    if !commit_cid.verify(commit_bytes) {
        return Err(RepoError::BadCommitHash(commit_cid));
    }
    let commit = Commit::decode(commit_bytes)?;
    if commit.did != expected_did {
        return Err(RepoError::WrongDid {
            expected: expected_did.to_owned(),
            found: commit.did,
        });
    }
    if let Some(key) = key {
        if !commit.verify(key) {
            return Err(RepoError::BadSignature);
        }
    }
    let entries = walk(&commit.data, &by_cid)?;
    if entries.len() > limits.max_records {
        return Err(RepoError::TooLarge {
            what: "records",
            limit: limits.max_records,
        });
    }
    let mut records = Vec::with_capacity(entries.len());
    for (key, cid) in entries {
        let Some(block) = by_cid.get(&cid) else {
            return Err(RepoError::MissingRecord { key, cid });
        };
        if !cid.verify(block) {
            return Err(RepoError::BadRecordHash { key, cid });
        }
        let Some((collection, rkey)) = key
            .split_once('/')
            .filter(|(c, r)| crate::syntax::is_nsid(c) && crate::syntax::is_record_key(r))
        else {
            return Err(RepoError::BadRecordKey { key });
        };
        records.push(RepoRecord {
            collection: collection.to_owned(),
            rkey: rkey.to_owned(),
            cid,
            block: block.to_vec(),
        });
    }
    Ok(VerifiedRepo {
        commit,
        commit_cid,
        records,
    })
}

/// A full repo CAR: the commit (the root), every MST node, then the records.
pub fn write_repo_car<'r>(
    commit_cid: Cid,
    commit_block: &[u8],
    mst: &mut Mst,
    records: impl IntoIterator<Item = (Cid, &'r [u8])>,
) -> Vec<u8> {
    let mut blocks = vec![(commit_cid, commit_block.to_vec())];
    blocks.extend(mst.blocks());
    blocks.extend(records.into_iter().map(|(c, b)| (c, b.to_vec())));
    write_car(&[commit_cid], &blocks)
}

/// What `verify_commit_event` established.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitCheck {
    pub commit: Commit,
    /// Whether the ops were inverted and matched `prevData` (false when the
    /// event has no `prevData` or is `tooBig`, so there was nothing to check).
    pub inverted: bool,
}

/// Checks a firehose `#commit`: its CAR's root is the commit block, which
/// names the event's repo and rev and is signed by `key`; and, when the event
/// carries `prevData` and is not `tooBig`, undoing its ops on the partial
/// tree in the CAR gives back exactly `prevData` (sync 1.1).
pub fn verify_commit_event(
    event: &frame::Commit,
    key: &PublicKey,
) -> Result<CommitCheck, RepoError> {
    let car = read_car_with(&event.blocks, &CarOptions::default()).map_err(RepoError::BadCar)?;
    if car.roots != [event.commit] {
        return Err(RepoError::BadRoots(car.roots.len()));
    }
    let commit_bytes = car
        .get(&event.commit)
        .ok_or(RepoError::MissingCommit(event.commit))?;
    let commit = Commit::decode(commit_bytes)?;
    if commit.did != event.repo {
        return Err(RepoError::WrongDid {
            expected: event.repo.clone(),
            found: commit.did,
        });
    }
    if commit.rev != event.rev {
        return Err(RepoError::WrongRev {
            expected: event.rev.clone(),
            found: commit.rev,
        });
    }
    if !commit.verify(key) {
        return Err(RepoError::BadSignature);
    }
    let Some(prev_data) = event.prev_data.filter(|_| !event.too_big) else {
        return Ok(CommitCheck {
            commit,
            inverted: false,
        });
    };
    let by_cid: HashMap<Cid, &[u8]> = car.blocks.iter().map(|(c, d)| (*c, d.as_slice())).collect();
    let computed = invert_ops(&commit.data, &event.ops, &by_cid)?;
    if computed != prev_data {
        return Err(RepoError::PrevDataMismatch {
            expected: prev_data,
            computed,
        });
    }
    Ok(CommitCheck {
        commit,
        inverted: true,
    })
}
