//! Labeler services: loading `app.bsky.labeler.service` records with their
//! like counts (and the viewer's like) in one query, and rendering
//! `app.bsky.labeler.defs#labelerView` and `#labelerViewDetailed`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{json, Map, Value};

use crate::compact::{did_id, subject_is, viewer_row};
use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::{put, put_opt, Db, Hydrated};

#[derive(Debug, Clone)]
pub struct LabelerInfo {
    pub uri: String,
    pub cid: String,
    pub did: String,
    pub record: Value,
    pub indexed_at: String,
    pub likes: i64,
    pub viewer_like: Option<String>,
}

/// A labeler's service record is its `self` record; likes of it are counted
/// in `post_counts`, like those of any other record.
static LABELER_QUERY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.uri, s.cid, s.did, r.record, \
       to_char(s.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS indexed_at, \
       COALESCE(c.likes, 0) AS likes, \
       {liked} AS viewer_like \
FROM unnest($1::text[]) AS d(did) \
JOIN labeler_services s ON s.uri = 'at://' || d.did || '/app.bsky.labeler.service/self' \
JOIN records r ON r.uri = s.uri \
LEFT JOIN LATERAL counts_of({actor}, 'app.bsky.labeler.service', rkey_id(s.rkey)) c ON true",
        actor = did_id("s.did"),
        liked = viewer_row(
            "like_rows",
            "app.bsky.feed.like",
            &did_id("$2"),
            "$2",
            &subject_is("v", "s.uri"),
        )
    )
});

/// Loads the labelers of the given DIDs in one query, keyed by DID.
pub async fn load_labelers(
    client: &Db,
    dids: &[String],
    viewer: Option<&str>,
) -> XrpcResult<HashMap<String, LabelerInfo>> {
    if dids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(&LABELER_QUERY).await?,
            &[&dids, &viewer],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let info = LabelerInfo {
                uri: row.col("uri")?,
                cid: row.col("cid")?,
                did: row.col("did")?,
                record: row.col::<Option<Value>>("record")?.unwrap_or(Value::Null),
                indexed_at: row.col("indexed_at")?,
                likes: row.col("likes")?,
                viewer_like: row.col("viewer_like")?,
            };
            Ok((info.did.clone(), info))
        })
        .collect()
}

/// `labelerView`, or with `detailed` `labelerViewDetailed` (which needs the
/// record's `policies.labelValues`). None when the creator is not served.
pub fn labeler_view(h: &Hydrated<'_>, l: &LabelerInfo, detailed: bool) -> Option<Value> {
    if h.blocked(&l.did) {
        return None;
    }
    let mut m = Map::new();
    if detailed {
        m.insert(
            "$type".into(),
            json!("app.bsky.labeler.defs#labelerViewDetailed"),
        );
    } else {
        m.insert("$type".into(), json!("app.bsky.labeler.defs#labelerView"));
    }
    put(&mut m, "uri", &l.uri);
    put(&mut m, "cid", &l.cid);
    m.insert("creator".into(), h.profile_view(&l.did)?);
    m.insert("likeCount".into(), json!(l.likes.max(0)));
    if h.viewer.is_some() {
        let mut viewer = Map::new();
        put_opt(&mut viewer, "like", l.viewer_like.as_deref());
        m.insert("viewer".into(), Value::Object(viewer));
    }
    put(&mut m, "indexedAt", &l.indexed_at);
    m.insert("labels".into(), h.record_labels(&l.uri, &l.cid, &l.record));
    if detailed {
        let policies = l
            .record
            .get("policies")
            .filter(|p| p.get("labelValues").is_some_and(Value::is_array))?;
        m.insert("policies".into(), policies.clone());
        for key in ["reasonTypes", "subjectTypes", "subjectCollections"] {
            if let Some(values) = l.record.get(key).filter(|v| v.is_array()) {
                m.insert(key.into(), values.clone());
            }
        }
    }
    Some(Value::Object(m))
}
