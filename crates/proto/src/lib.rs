//! skyhose-proto: the AT Protocol wire format. It owns DAG-CBOR, CIDs, CAR v1,
//! subscribeRepos frames, the data model's JSON form, typed records, identifier
//! syntax and key verification, and repositories: the MST, signed commits,
//! repo CARs and the sync 1.1 commit checks. It does no I/O and knows nothing of Redis, PostgreSQL or HTTP.

pub mod car;
pub mod cbor;
pub mod cid;
pub mod crypto;
pub mod datamodel;
pub mod datetime;
pub mod decode;
pub mod frame;
pub mod json;
pub mod mst;
pub mod ops;
pub mod records;
pub mod repo;
pub mod syntax;
pub mod tid;

pub use cid::Cid;

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

#[cfg(test)]
mod tests;
