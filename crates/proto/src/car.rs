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
