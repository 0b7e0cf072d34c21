//! Content identifiers: CIDv1 with a sha-256 multihash, the form the AT Protocol data model uses for links.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::WireError;

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

/// A CID string that is not a base32 (`b…`) sha-256 CIDv1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a base32 sha-256 CIDv1 (dag-cbor or raw)")]
pub struct CidParseError {
    pub input: String,
}

impl Cid {
    /// Parses the multibase base32 string form (`bafy…`, `bafk…`).
    pub fn parse(text: &str) -> Result<Cid, CidParseError> {
        let fail = || CidParseError {
            input: text.chars().take(80).collect(),
        };
        let b32 = text.strip_prefix('b').ok_or_else(fail)?;
        if b32.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail());
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(b32.to_ascii_uppercase().as_bytes())
            .map_err(|_| fail())?;
        Cid::from_bytes(&bytes).map_err(|_| fail())
    }

    /// Whether `block` hashes to this CID.
    pub fn verify(&self, block: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(block).into();
        digest == self.digest
    }
}

impl std::str::FromStr for Cid {
    type Err = CidParseError;
    fn from_str(text: &str) -> Result<Cid, CidParseError> {
        Cid::parse(text)
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
