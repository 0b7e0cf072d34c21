//! Labels on views. Self-labels are the labels an author puts in its own
//! record (`labels: {"$type": "com.atproto.label.defs#selfLabels", "values":
//! [{"val": ...}]}`); a view shows each as a `com.atproto.label.defs#label`
//! with the author as `src`, the record's URI and CID, and the record's
//! `createdAt` as `cts` (the Unix epoch when it has no valid one), as the
//! official AppView shows them. Every view kind takes its labels from here.
//!
//! Labelers' labels and takedowns come from the tables of `skyhose-labels`
//! (migration 0018): [`load_moderation`] reads, in one statement, the
//! labels in force on a response's subjects from the labelers the request
//! accepts, and which subjects are taken down, by the operator or by a
//! `!takedown` / `!suspend` label of a labeler trusted for takedowns or
//! accepted by the request with `redact`.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::{is_datetime, uri_did, Db};

/// The `cts` of a self-label on a record without a valid `createdAt`.
const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// `com.atproto.label.defs#label`, keys in byte order like every view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Set when the label is about one version of a record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    pub cts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<String>,
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
            cid: Some(cid.to_owned()),
            cts: cts.to_owned(),
            exp: None,
            src: src.to_owned(),
            uri: uri.to_owned(),
            val: val.to_owned(),
        })
        .collect()
}

/// Labelers a request may name in `atproto-accept-labelers` at most.
pub const MAX_ACCEPTED_LABELERS: usize = 20;

tokio::task_local! {
    /// The labelers the request being served accepts, set by the dispatcher
    /// from `atproto-accept-labelers`, so every view hydrated for it shows
    /// their labels without each handler passing them on.
    pub static ACCEPTED_LABELERS: std::sync::Arc<[Accepted]>;
}

/// A labeler a request accepts, and whether it asked for `redact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub did: String,
    pub redact: bool,
}

/// The labelers `atproto-accept-labelers` names (`did[;redact], ...`);
/// without the header the configured ones, each with `redact`, as the
/// official AppView takes its defaults. Entries that are not DIDs are left
/// out.
pub fn accepted_labelers(header: Option<&str>, configured: &[String]) -> Vec<Accepted> {
    let Some(header) = header else {
        return configured
            .iter()
            .map(|did| Accepted {
                did: did.clone(),
                redact: true,
            })
            .collect();
    };
    let mut accepted: Vec<Accepted> = Vec::new();
    for entry in header.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let did = parts.next().unwrap_or_default();
        let redact = parts.any(|p| p == "redact");
        if skyhose_proto::syntax::is_did(did) && !accepted.iter().any(|a| a.did == did) {
            accepted.push(Accepted {
                did: did.to_owned(),
                redact,
            });
        }
        if accepted.len() == MAX_ACCEPTED_LABELERS {
            break;
        }
    }
    accepted
}

/// Keeps the labelers that can apply: the configured ones, and others that
/// are served accounts (the official AppView leaves out labelers that do
/// not exist or are taken down). One query, only when a request names
/// labelers beyond the configured ones.
pub async fn available_labelers(
    client: &Db,
    accepted: Vec<Accepted>,
    configured: &[String],
) -> XrpcResult<Vec<Accepted>> {
    let others: Vec<&str> = accepted
        .iter()
        .filter(|a| !configured.contains(&a.did))
        .map(|a| a.did.as_str())
        .collect();
    if others.is_empty() {
        return Ok(accepted);
    }
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT a.did FROM actors a WHERE a.did = ANY($1) AND a.indexed \
                     AND a.status = 'active' \
                     AND NOT EXISTS (SELECT 1 FROM takedowns t WHERE t.subject = a.did)",
                )
                .await?,
            &[&others],
        )
        .await?;
    let served: HashSet<String> = rows
        .iter()
        .map(|r| r.col::<String>("did"))
        .collect::<Result<_, _>>()?;
    Ok(accepted
        .into_iter()
        .filter(|a| configured.contains(&a.did) || served.contains(&a.did))
        .collect())
}

/// The `atproto-content-labelers` value: the labelers applied, with `redact`
/// where the request asked for it.
pub fn content_labelers(applied: &[Accepted]) -> String {
    applied
        .iter()
        .map(|a| {
            if a.redact {
                format!("{};redact", a.did)
            } else {
                a.did.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The labelers whose labels the current request shows.
pub fn current_labelers(configured: &[String]) -> std::sync::Arc<[Accepted]> {
    ACCEPTED_LABELERS
        .try_with(|accepted| accepted.clone())
        .unwrap_or_else(|_| accepted_labelers(None, configured).into())
}

/// The labelers whose labels the current request shows, and those whose
/// takedown labels hide their subject from it: the ones it accepts with
/// `redact`, and the ones trusted for takedowns (`takedown_labelers`).
pub fn request_labelers(config: &crate::ApiConfig) -> (Vec<String>, Vec<String>) {
    let accepted = current_labelers(&config.labelers);
    let shown = accepted.iter().map(|a| a.did.clone()).collect();
    let hiding = accepted
        .iter()
        .filter(|a| a.redact)
        .map(|a| a.did.clone())
        .chain(config.takedown_labelers.iter().cloned())
        .collect();
    (shown, hiding)
}

/// Label values that take their subject down when a labeler trusted for
/// takedowns applies them, or one the request accepts with `redact` (as
/// the official AppView redacts them).
pub const TAKEDOWN_VALUES: [&str; 2] = ["!takedown", "!suspend"];

/// What labelers and the operator say about a response's subjects.
#[derive(Debug, Default)]
pub struct Moderation {
    /// Labels in force by subject (a DID or a record's AT-URI), from the
    /// accepted labelers.
    pub labels: HashMap<String, Vec<Label>>,
    /// Subjects taken down.
    pub taken_down: HashSet<String>,
}

impl Moderation {
    /// Moves the labels of `subject` out.
    pub fn take(&mut self, subject: &str) -> Vec<Label> {
        self.labels.remove(subject).unwrap_or_default()
    }
}

const MODERATION: &str = "
SELECT l.uri, lr.did AS src, l.cid, l.val, l.cts, l.exp, lr.did = ANY($2) AS shown
FROM labels l JOIN labelers lr ON lr.id = l.src
WHERE l.uri = ANY($1) AND NOT l.neg
  AND (l.exp IS NULL OR l.exp::timestamptz > now())
  AND (lr.did = ANY($2) OR (lr.did = ANY($3) AND l.val = ANY($4)))
UNION ALL
SELECT t.subject, NULL, NULL, NULL, NULL, NULL, false FROM takedowns t WHERE t.subject = ANY($1)";

/// The labels of `accepted` labelers on `subjects` and which of them are
/// taken down (by the operator, or by the takedown labels of `hiding`
/// labelers).
pub async fn load_moderation(
    client: &Db,
    subjects: &[String],
    accepted: &[String],
    hiding: &[String],
) -> XrpcResult<Moderation> {
    let mut moderation = Moderation::default();
    if subjects.is_empty() {
        return Ok(moderation);
    }
    let values: Vec<&str> = TAKEDOWN_VALUES.to_vec();
    let rows = client
        .query(
            &client.prepare_cached(MODERATION).await?,
            &[&subjects, &accepted, &hiding, &values],
        )
        .await?;
    for row in &rows {
        let uri: String = row.col("uri")?;
        let Some(src) = row.col::<Option<String>>("src")? else {
            moderation.taken_down.insert(uri);
            continue;
        };
        let val: String = row.col::<Option<String>>("val")?.unwrap_or_default();
        if hiding.contains(&src) && TAKEDOWN_VALUES.contains(&val.as_str()) {
            moderation.taken_down.insert(uri.clone());
        }
        if row.col::<bool>("shown")? {
            let label = Label {
                cid: row.col("cid")?,
                cts: row.col::<Option<String>>("cts")?.unwrap_or_default(),
                exp: row.col("exp")?,
                src,
                uri: uri.clone(),
                val,
            };
            moderation.labels.entry(uri).or_default().push(label);
        }
    }
    for labels in moderation.labels.values_mut() {
        labels.sort_by(|a, b| (&a.src, &a.val).cmp(&(&b.src, &b.val)));
    }
    Ok(moderation)
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
    fn accepted_labelers_come_from_the_header_or_the_configuration() {
        let configured = vec!["did:plc:default".to_owned()];
        let defaults = accepted_labelers(None, &configured);
        assert_eq!(content_labelers(&defaults), "did:plc:default;redact");
        let named = accepted_labelers(
            Some("did:plc:a;redact, did:web:b.test ,nope,did:plc:a"),
            &configured,
        );
        assert_eq!(content_labelers(&named), "did:plc:a;redact,did:web:b.test");
        assert!(accepted_labelers(Some(""), &configured).is_empty());
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
