//! The AT Protocol data model in its JSON form: links as `{"$link": cid}`, bytes
//! as `{"$bytes": base64}`, blobs as `{"$type": "blob", "ref", "mimeType", "size"}`.
//! `from_json` is strict, because JSON from outside (stream entries, API input)
//! must map to exactly one DAG-CBOR encoding; `to_json` is total.

use std::collections::BTreeMap;

use data_encoding::{BASE64, BASE64_NOPAD};
use serde_json::{Map, Number, Value as Json};

use crate::cbor::Value;
use crate::Cid;

/// Why a JSON value is not in the AT Protocol data model; `path` is where
/// (`$.embed.images[0].image.ref`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct DataModelError {
    pub path: String,
    pub problem: String,
}

/// The largest integer JSON readers agree on (2^53 - 1), which the data model
/// also uses as its integer range.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A data-model value as JSON.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(n) => Json::Number(Number::from(*n)),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(bytes) => single("$bytes", Json::String(BASE64_NOPAD.encode(bytes))),
        Value::Link(cid) => single("$link", Json::String(cid.to_string())),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn single(key: &str, value: Json) -> Json {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Json::Object(map)
}

/// The CID of the record `json` (its JSON text) encoded as canonical
/// DAG-CBOR: the CID a record has when its block was encoded that way.
/// `None` when the text is not a data-model value.
pub fn record_cid(json: &str) -> Option<crate::Cid> {
    let value: Json = serde_json::from_str(json).ok()?;
    let model = from_json(&value).ok()?;
    Some(crate::Cid::for_dag_cbor(&crate::cbor::encode(&model)))
}

/// A JSON object (a record, or any data-model object) as a data-model value.
pub fn from_json(json: &Json) -> Result<Value, DataModelError> {
    if !json.is_object() {
        return Err(DataModelError {
            path: "$".into(),
            problem: "the top level must be an object".into(),
        });
    }
    convert(json, &mut "$".to_owned())
}

fn fail(path: &str, problem: impl Into<String>) -> DataModelError {
    DataModelError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn convert(json: &Json, path: &mut String) -> Result<Value, DataModelError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Integer(integer(n, path)?),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(convert(item, path)?);
                path.truncate(len);
            }
            Value::List(out)
        }
        Json::Object(map) => object(map, path)?,
    })
}

fn integer(n: &Number, path: &str) -> Result<i64, DataModelError> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        // `1.0` is an integer written by a JSON encoder that only has doubles.
        Some(f) if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER => Ok(f as i64),
        _ => Err(fail(
            path,
            format!("{n} is not an integer (the data model has no floats)"),
        )),
    }
}

fn object(map: &Map<String, Json>, path: &mut String) -> Result<Value, DataModelError> {
    if let Some(link) = map.get("$link") {
        let text = link
            .as_str()
            .filter(|_| map.len() == 1)
            .ok_or_else(|| fail(path, "a $link object has exactly one string field"))?;
        let cid = Cid::parse(text).map_err(|e| fail(path, e.to_string()))?;
        return Ok(Value::Link(cid));
    }
    if let Some(bytes) = map.get("$bytes") {
        let text = bytes
            .as_str()
            .filter(|_| map.len() == 1)
            .ok_or_else(|| fail(path, "a $bytes object has exactly one string field"))?;
        let decoded = BASE64_NOPAD
            .decode(text.as_bytes())
            .or_else(|_| BASE64.decode(text.as_bytes()))
            .map_err(|_| fail(path, "$bytes is not base64"))?;
        return Ok(Value::Bytes(decoded));
    }
    match map.get("$type") {
        None => {}
        Some(Json::String(t)) if t == "blob" => check_blob(map, path)?,
        Some(Json::String(t)) if !t.is_empty() => {}
        Some(_) => return Err(fail(path, "$type must be a non-empty string")),
    }
    let mut out = BTreeMap::new();
    for (key, value) in map {
        let len = path.len();
        path.push('.');
        path.push_str(key);
        out.insert(key.clone(), convert(value, path)?);
        path.truncate(len);
    }
    Ok(Value::Map(out))
}

fn check_blob(map: &Map<String, Json>, path: &str) -> Result<(), DataModelError> {
    let has_link = map
        .get("ref")
        .and_then(Json::as_object)
        .is_some_and(|r| r.contains_key("$link"));
    if !has_link {
        return Err(fail(
            path,
            "a blob needs `ref` as a {\"$link\": cid} object",
        ));
    }
    if !map.get("mimeType").is_some_and(Json::is_string) {
        return Err(fail(path, "a blob needs a string `mimeType`"));
    }
    if !map.get("size").is_some_and(|s| s.is_i64() || s.is_u64()) {
        return Err(fail(path, "a blob needs an integer `size`"));
    }
    Ok(())
}

/// Appends `value` as compact JSON text, the same document `to_json` builds,
/// without building it: ingest turns every record into JSON text, and the
/// intermediate tree would cost an allocation per node. Links are
/// `{"$link": cid}`, bytes `{"$bytes": base64}` (standard alphabet, no
/// padding). This is the writer behind every stream entry.
pub fn write_json(value: &Value, out: &mut String) {
    use std::fmt::Write;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::String(s) => write_json_str(out, s),
        Value::Bytes(b) => {
            out.push_str("{\"$bytes\":\"");
            out.push_str(&BASE64_NOPAD.encode(b));
            out.push_str("\"}");
        }
        Value::Link(cid) => {
            out.push_str("{\"$link\":\"");
            let _ = write!(out, "{cid}");
            out.push_str("\"}");
        }
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Map(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_key(out, k);
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

/// Appends a record block (DAG-CBOR bytes) as its data-model JSON, after
/// checking it is exactly one map: ingest (an op's record) and the backfill
/// (a repo's records) store the same text for the same record.
pub fn write_record_json(block: &[u8], out: &mut String) -> Result<(), String> {
    let (value, used) =
        crate::cbor::decode_prefix(block).map_err(|e| format!("record not DAG-CBOR: {e}"))?;
    if used != block.len() {
        return Err(format!(
            "record block has {} trailing bytes",
            block.len() - used
        ));
    }
    if !matches!(value, Value::Map(_)) {
        return Err("record is not a map".to_owned());
    }
    write_json(&value, out);
    Ok(())
}

/// Appends `text` as a JSON string literal. Only `"`, `\` and control
/// characters need escaping, so runs of other bytes are copied whole.
pub fn write_json_str(out: &mut String, text: &str) {
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
            use std::fmt::Write;
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(text.get(start..).unwrap_or_default());
    out.push('"');
}

/// Appends `"key":`.
pub fn write_json_key(out: &mut String, key: &str) {
    write_json_str(out, key);
    out.push(':');
}

#[cfg(test)]
mod write_json_tests {
    use super::*;

    #[test]
    fn text_matches_the_json_tree() {
        let value = Value::map([
            (
                "text",
                Value::from("quote \" slash \\ nl \n bell \u{7} é 🦋"),
            ),
            ("n", Value::Integer(-42)),
            ("ok", Value::Bool(true)),
            ("none", Value::Null),
            ("bytes", Value::Bytes(vec![1, 2, 3, 250])),
            ("link", Value::Link(Cid::for_dag_cbor(b"\xa0"))),
            (
                "list",
                Value::List(vec![Value::Integer(1), Value::from("x")]),
            ),
            ("empty", Value::Map(BTreeMap::new())),
        ]);
        let mut text = String::new();
        write_json(&value, &mut text);
        let parsed: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, to_json(&value));
    }

    #[test]
    fn strings_escape_like_serde_json() {
        for text in [
            "plain",
            "quote \" back \\ nl \n tab \t",
            "ctl \u{1} \u{1f} \u{8} \u{c}",
            "ünï 😀",
        ] {
            let mut out = String::new();
            write_json_str(&mut out, text);
            let parsed: String = serde_json::from_str(&out).unwrap_or_default();
            assert_eq!(parsed, text, "{out}");
        }
    }
}
