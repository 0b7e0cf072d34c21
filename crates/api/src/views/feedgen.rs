//! Feed generators: loading them with their like counts (and the viewer's
//! like) in one query, and rendering `app.bsky.feed.defs#generatorView`. The
//! creator's profile comes from a [`Hydrated`] the caller loaded with the
//! creators' DIDs.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{json, Map, Value};

use crate::compact::{did_id, subject_is, viewer_row};
use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::embed::blob_cid;
use crate::views::{put, put_opt, Db, Hydrated};

#[derive(Debug, Clone)]
pub struct GeneratorInfo {
    pub uri: String,
    pub cid: String,
    /// The creator: the repo holding the generator record.
    pub did: String,
    /// The DID of the service that serves the feed.
    pub service_did: Option<String>,
    pub record: Value,
    pub indexed_at: String,
    pub likes: i64,
    pub viewer_like: Option<String>,
}

/// Likes of a generator are counted in `post_counts`, like those of any
/// other record.
static GENERATOR_QUERY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT g.uri, g.cid, g.did, g.service_did, r.record, \
       to_char(g.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS indexed_at, \
       COALESCE(c.likes, 0) AS likes, \
       {liked} AS viewer_like \
FROM unnest($1::text[]) AS u(uri) \
JOIN feed_generators g ON g.uri = u.uri \
JOIN records r ON r.uri = g.uri \
LEFT JOIN LATERAL counts_of({actor}, 'app.bsky.feed.generator', rkey_id(g.rkey)) c ON true",
        actor = did_id("g.did"),
        liked = viewer_row(
            "like_rows",
            "app.bsky.feed.like",
            &did_id("$2"),
            "$2",
            &subject_is("v", "g.uri"),
        )
    )
});

/// Loads the given generators in one query; unknown URIs are absent.
pub async fn load_generators(
    client: &Db,
    uris: &[String],
    viewer: Option<&str>,
) -> XrpcResult<HashMap<String, GeneratorInfo>> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(&GENERATOR_QUERY).await?,
            &[&uris, &viewer],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let info = GeneratorInfo {
                uri: row.col("uri")?,
                cid: row.col("cid")?,
                did: row.col("did")?,
                service_did: row.col("service_did")?,
                record: row.col::<Option<Value>>("record")?.unwrap_or(Value::Null),
                indexed_at: row.col("indexed_at")?,
                likes: row.col("likes")?,
                viewer_like: row.col("viewer_like")?,
            };
            Ok((info.uri.clone(), info))
        })
        .collect()
}

/// `app.bsky.feed.defs#generatorView`, or None when the creator is not
/// served, is blocked, or the record lacks what the view requires.
pub fn generator_view(h: &Hydrated<'_>, g: &GeneratorInfo) -> Option<Value> {
    if h.blocked(&g.did) {
        return None;
    }
    let creator = h.profile_view(&g.did)?;
    let service_did = g
        .service_did
        .as_deref()
        .filter(|d| skyhose_proto::syntax::is_did(d))?;
    let record = &g.record;
    let text = |key: &str| record.get(key).and_then(Value::as_str);
    let mut m = Map::new();
    put(&mut m, "uri", &g.uri);
    put(&mut m, "cid", &g.cid);
    put(&mut m, "did", service_did);
    m.insert("creator".into(), creator);
    put(&mut m, "displayName", text("displayName").unwrap_or(""));
    put_opt(&mut m, "description", text("description"));
    if let Some(facets) = record.get("descriptionFacets").filter(|f| f.is_array()) {
        m.insert("descriptionFacets".into(), facets.clone());
    }
    if let Some(cid) = record.get("avatar").and_then(blob_cid) {
        put(&mut m, "avatar", h.config.image_url("avatar", &g.did, cid));
    }
    m.insert("likeCount".into(), json!(g.likes.max(0)));
    if let Some(accepts) = record.get("acceptsInteractions").and_then(Value::as_bool) {
        m.insert("acceptsInteractions".into(), json!(accepts));
    }
    m.insert("labels".into(), h.record_labels(&g.uri, &g.cid, &g.record));
    if h.viewer.is_some() {
        let mut viewer = Map::new();
        put_opt(&mut viewer, "like", g.viewer_like.as_deref());
        m.insert("viewer".into(), Value::Object(viewer));
    }
    put_opt(&mut m, "contentMode", text("contentMode"));
    put(&mut m, "indexedAt", &g.indexed_at);
    Some(Value::Object(m))
}
