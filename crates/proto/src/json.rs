//! Writes JSON text straight into a `String`: a stream entry or a backfilled
//! record is written once, so going through an intermediate
//! `serde_json::Value` would double the work. The one writer of record JSON
//! for both paths, so a record is stored the same whichever way it came.

use crate::cbor::{decode_prefix, Value};

/// Appends `text` as a JSON string literal.
pub fn push_str(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(text.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(text.get(start..).unwrap_or_default());
    out.push('"');
}

/// Appends `"key":`.
pub fn push_key(out: &mut String, key: &str) {
    push_str(out, key);
    out.push(':');
}

/// Appends a data-model value in its JSON form: links as `{"$link": cid}`,
/// bytes as `{"$bytes": base64}` (standard alphabet, no padding).
pub fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Integer(i) => {
            use std::fmt::Write;
            let _ = write!(out, "{i}");
        }
        Value::String(s) => push_str(out, s),
        Value::Bytes(b) => {
            out.push_str("{\"$bytes\":\"");
            out.push_str(&data_encoding::BASE64_NOPAD.encode(b));
            out.push_str("\"}");
        }
        Value::Link(cid) => {
            out.push_str("{\"$link\":\"");
            use std::fmt::Write;
            let _ = write!(out, "{cid}");
            out.push_str("\"}");
        }
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(']');
        }
        Value::Map(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_key(out, k);
                push_value(out, v);
            }
            out.push('}');
        }
    }
}

/// Appends the JSON form of a record block: one DAG-CBOR map and nothing
/// after it. On error `out` may hold part of the record; the caller cuts it.
pub fn push_record(out: &mut String, block: &[u8]) -> Result<(), String> {
    let (value, used) = decode_prefix(block).map_err(|e| format!("record not DAG-CBOR: {e}"))?;
    if used != block.len() {
        return Err(format!(
            "record block has {} trailing bytes",
            block.len() - used
        ));
    }
    if !matches!(value, Value::Map(_)) {
        return Err("record is not a map".to_owned());
    }
    push_value(out, &value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_serde_json() {
        for text in [
            "plain",
            "quote \" back \\ nl \n tab \t",
            "ctl \u{1} \u{1f}",
            "ünï 😀",
        ] {
            let mut out = String::new();
            push_str(&mut out, text);
            let parsed: String = serde_json::from_str(&out).unwrap_or_default();
            assert_eq!(parsed, text, "{out}");
        }
    }
}
