//! Canonical DAG-CBOR: the data model value, its encoder (map keys sorted by length
//! then bytes, shortest heads) and a strict decoder that checks lengths before allocating.

use std::collections::BTreeMap;

use crate::{Cid, WireError};

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

pub(crate) fn head(out: &mut Vec<u8>, major: u8, n: u64) {
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

pub(crate) fn take<'a>(input: &'a [u8], pos: &mut usize, n: u64) -> Result<&'a [u8], WireError> {
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
