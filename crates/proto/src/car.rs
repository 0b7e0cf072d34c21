//! CAR v1 files: a varint-framed header with roots, then varint-framed (CID, bytes) blocks.

use crate::cbor::{decode_prefix, encode, take, Value};
use crate::{Cid, WireError};

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

/// The blocks of a CAR v1 file as borrowed slices, in file order: each item
/// is the block's 36 CID bytes and its data. Nothing is copied, so looking up
/// one record in a commit's CAR costs a scan of its framing only.
pub struct Sections<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Sections<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.input.len() {
            return None;
        }
        let item = read_varint(self.input, &mut self.pos).and_then(|len| {
            let block = take(self.input, &mut self.pos, len)
                .map_err(|_| WireError::BadCar("block truncated"))?;
            block
                .split_at_checked(36)
                .ok_or(WireError::BadCar("block shorter than a CID"))
        });
        if item.is_err() {
            // A framing error leaves no way to find the next block.
            self.pos = self.input.len();
        }
        Some(item)
    }
}

/// The header section's bytes (DAG-CBOR, undecoded) and the blocks after it.
pub fn sections(input: &[u8]) -> Result<(&[u8], Sections<'_>), WireError> {
    if input.is_empty() {
        return Err(WireError::BadCar("empty file"));
    }
    let mut pos = 0;
    let header_len = read_varint(input, &mut pos)?;
    let header =
        take(input, &mut pos, header_len).map_err(|_| WireError::BadCar("header truncated"))?;
    Ok((header, Sections { input, pos }))
}

/// The block of `cid`, borrowed from the file.
pub fn find_block<'a>(input: &'a [u8], cid: &Cid) -> Result<Option<&'a [u8]>, WireError> {
    let wanted = cid.to_bytes();
    let (_, blocks) = sections(input)?;
    for block in blocks {
        let (cid_bytes, data) = block?;
        if cid_bytes == wanted {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Reads a CAR v1 file into its roots and blocks (CIDs are not re-verified).
pub fn read_car(input: &[u8]) -> Result<(Vec<Cid>, Vec<Block>), WireError> {
    let (header, sections) = sections(input)?;
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
    let blocks = sections
        .map(|block| {
            let (cid_bytes, data) = block?;
            Ok((Cid::from_bytes(cid_bytes)?, data.to_vec()))
        })
        .collect::<Result<_, WireError>>()?;
    Ok((roots, blocks))
}

/// Limits and checks for `read_car_with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarOptions {
    /// Re-hash every block and compare with its CID (sha-256 only).
    pub verify_cids: bool,
    pub max_blocks: usize,
    pub max_block_bytes: usize,
}

impl Default for CarOptions {
    /// Generous for a firehose commit (relays cap a commit's CAR at 2 MB),
    /// tight enough to refuse a hostile file early.
    fn default() -> Self {
        CarOptions {
            verify_cids: true,
            max_blocks: 10_000,
            max_block_bytes: 2 * 1024 * 1024,
        }
    }
}

/// A CAR file read into memory, with lookup by CID.
#[derive(Debug, Clone, PartialEq)]
pub struct Car {
    pub roots: Vec<Cid>,
    pub blocks: Vec<Block>,
}

impl Car {
    /// Linear scan: commit CARs hold a handful of blocks, fewer than a map would pay for.
    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.blocks
            .iter()
            .find(|(c, _)| c == cid)
            .map(|(_, data)| data.as_slice())
    }
}

/// Like `read_car`, with limits and (by default) CID verification. Memory
/// stays bounded by the input's length even before the limits apply, because
/// every block is a slice of it.
pub fn read_car_with(input: &[u8], opts: &CarOptions) -> Result<Car, WireError> {
    let (roots, blocks) = read_car(input)?;
    if blocks.len() > opts.max_blocks {
        return Err(WireError::BadCar("more blocks than the limit"));
    }
    if blocks
        .iter()
        .any(|(_, data)| data.len() > opts.max_block_bytes)
    {
        return Err(WireError::BadCar("a block is larger than the limit"));
    }
    if opts.verify_cids && blocks.iter().any(|(cid, data)| !cid.verify(data)) {
        return Err(WireError::BadCar("a block does not hash to its CID"));
    }
    Ok(Car { roots, blocks })
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn verifies_limits_and_finds_blocks() {
        let data = encode(&Value::map([("a", Value::Integer(1))]));
        let cid = Cid::for_dag_cbor(&data);
        let car = write_car(&[cid], &[(cid, data.clone())]);
        let read = read_car_with(&car, &CarOptions::default()).unwrap();
        assert_eq!(read.get(&cid), Some(data.as_slice()));
        assert_eq!(read.get(&Cid::for_raw(b"x")), None);

        let wrong = Cid::for_raw(b"other");
        let forged = write_car(&[wrong], &[(wrong, data.clone())]);
        assert!(read_car_with(&forged, &CarOptions::default()).is_err());
        let unverified = CarOptions {
            verify_cids: false,
            ..CarOptions::default()
        };
        assert!(read_car_with(&forged, &unverified).is_ok());
        let tiny = CarOptions {
            max_block_bytes: 1,
            ..CarOptions::default()
        };
        assert!(read_car_with(&car, &tiny).is_err());
    }
}
