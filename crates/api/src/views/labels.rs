//! Labels on views. Self-labels are the labels an author puts in its own
//! record (`labels: {"$type": "com.atproto.label.defs#selfLabels", "values":
//! [{"val": ...}]}`); a view shows each as a `com.atproto.label.defs#label`
//! with the author as `src`, the record's URI and CID, and the record's
//! `createdAt` as `cts` (the Unix epoch when it has no valid one), as the
//! official AppView shows them. Every view kind takes its labels from here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::views::{is_datetime, uri_did};

/// The `cts` of a self-label on a record without a valid `createdAt`.
const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// `com.atproto.label.defs#label`, keys in byte order like every view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub cid: String,
    pub cts: String,
    pub src: String,
    pub uri: String,
    pub val: String,
}

#[derive(Deserialize)]
struct Labelled {
    labels: Option<Value>,
    #[serde(rename = "createdAt")]
    created_at: Option<Value>,
}

/// The self-labels of the record at `uri` (version `cid`), from its JSON text.
/// Most records carry none, so a text without the quoted key is not parsed.
pub fn self_labels_in_text(uri: &str, cid: &str, record: &str) -> Vec<Label> {
    if !record.contains("\"labels\"") {
        return Vec::new();
    }
    match serde_json::from_str::<Labelled>(record) {
        Ok(r) => from_parts(uri, cid, r.labels.as_ref(), r.created_at.as_ref()),
        Err(_) => Vec::new(),
    }
}

/// [`self_labels_in_text`] for a record already parsed.
pub fn self_labels(uri: &str, cid: &str, record: &Value) -> Vec<Label> {
    from_parts(uri, cid, record.get("labels"), record.get("createdAt"))
}

/// The self-labels given the record's `labels` and `createdAt` values.
pub fn from_parts(
    uri: &str,
    cid: &str,
    labels: Option<&Value>,
    created_at: Option<&Value>,
) -> Vec<Label> {
    let Some(labels) = labels.filter(|l| {
        l.get("$type").and_then(Value::as_str) == Some("com.atproto.label.defs#selfLabels")
    }) else {
        return Vec::new();
    };
    let Some(values) = labels.get("values").and_then(Value::as_array) else {
        return Vec::new();
    };
    let Some(src) = uri_did(uri) else {
        return Vec::new();
    };
    let cts = created_at
        .and_then(Value::as_str)
        .filter(|c| is_datetime(c))
        .unwrap_or(EPOCH);
    values
        .iter()
        .filter_map(|v| v.get("val").and_then(Value::as_str))
        .filter(|val| !val.is_empty())
        .map(|val| Label {
            cid: cid.to_owned(),
            cts: cts.to_owned(),
            src: src.to_owned(),
            uri: uri.to_owned(),
            val: val.to_owned(),
        })
        .collect()
}

/// Labels as a JSON array, for views built as maps.
pub fn to_value(labels: &[Label]) -> Value {
    serde_json::to_value(labels).unwrap_or_else(|_| Value::Array(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URI: &str = "at://did:plc:abc/app.bsky.feed.post/3l2";

    #[test]
    fn self_labels_name_the_author_record_and_creation_time() {
        let text = r#"{"$type":"app.bsky.feed.post","text":"x","createdAt":"2024-01-02T03:04:05.678Z","labels":{"$type":"com.atproto.label.defs#selfLabels","values":[{"val":"graphic-media"},{"val":"nudity"}]}}"#;
        let labels = self_labels_in_text(URI, "bafycid", text);
        assert_eq!(labels.len(), 2);
        assert_eq!(
            to_value(&labels[..1]),
            json!([{"src": "did:plc:abc", "uri": URI, "cid": "bafycid",
                    "val": "graphic-media", "cts": "2024-01-02T03:04:05.678Z"}])
        );
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(self_labels(URI, "bafycid", &parsed), labels);
    }

    #[test]
    fn records_without_valid_self_labels_have_none() {
        assert!(self_labels_in_text(URI, "c", r#"{"text":"no labels"}"#).is_empty());
        // Another $type of labels is not a self-label.
        let other = json!({"labels": {"$type": "x#other", "values": [{"val": "a"}]}});
        assert!(self_labels(URI, "c", &other).is_empty());
        // No createdAt: the epoch.
        let no_time = json!({"labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "a"}]}});
        assert_eq!(self_labels(URI, "c", &no_time)[0].cts, EPOCH);
    }
}
