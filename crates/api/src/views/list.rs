//! Lists: loading them with their item counts (and the viewer's block of
//! them) in one query, and rendering `app.bsky.graph.defs#listView` and
//! `#listViewBasic`. The creator's profile comes from a [`Hydrated`] the
//! caller loaded with the creators' DIDs.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::embed::blob_cid;
use crate::views::{put, put_opt, Db, Hydrated};

#[derive(Debug, Clone)]
pub struct ListInfo {
    pub uri: String,
    pub cid: String,
    /// The creator: the repo holding the list record.
    pub did: String,
    pub name: Option<String>,
    pub purpose: Option<String>,
    pub record: Value,
    pub indexed_at: String,
    pub item_count: i64,
    /// The viewer's listblock record of this list.
    pub viewer_block: Option<String>,
    /// The viewer mutes the list (private state, `views::private`).
    pub viewer_muted: bool,
}

const LIST_QUERY: &str = "\
SELECT l.uri, l.cid, l.did, l.name, l.purpose, r.record, \
       to_char(l.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS indexed_at, \
       (SELECT count(*) FROM list_items li WHERE li.list_uri = l.uri) AS item_count, \
       (SELECT lb.uri FROM list_blocks lb WHERE lb.did = $2 AND lb.list_uri = l.uri \
        ORDER BY lb.rkey LIMIT 1) AS viewer_block, \
       EXISTS (SELECT 1 FROM private_list_mutes lm WHERE lm.did = $2 AND lm.list_uri = l.uri) \
         AS viewer_muted \
FROM unnest($1::text[]) AS u(uri) \
JOIN lists l ON l.uri = u.uri \
JOIN records r ON r.uri = l.uri";

/// Loads the given lists in one query; unknown URIs are absent.
pub async fn load_lists(
    client: &Db,
    uris: &[String],
    viewer: Option<&str>,
) -> XrpcResult<HashMap<String, ListInfo>> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(&client.prepare_cached(LIST_QUERY).await?, &[&uris, &viewer])
        .await?;
    rows.iter()
        .map(|row| {
            let info = ListInfo {
                uri: row.col("uri")?,
                cid: row.col("cid")?,
                did: row.col("did")?,
                name: row.col("name")?,
                purpose: row.col("purpose")?,
                record: row.col::<Option<Value>>("record")?.unwrap_or(Value::Null),
                indexed_at: row.col("indexed_at")?,
                item_count: row.col("item_count")?,
                viewer_block: row.col("viewer_block")?,
                viewer_muted: row.col("viewer_muted")?,
            };
            Ok((info.uri.clone(), info))
        })
        .collect()
}

/// The fields `listView` and `listViewBasic` share; None when the creator is
/// not served or blocked, or the record lacks a name or purpose.
fn common(h: &Hydrated<'_>, l: &ListInfo) -> Option<Map<String, Value>> {
    if h.blocked(&l.did) {
        return None;
    }
    h.actor(&l.did)?;
    let mut m = Map::new();
    put(&mut m, "uri", &l.uri);
    put(&mut m, "cid", &l.cid);
    put(&mut m, "name", l.name.as_deref()?);
    put(&mut m, "purpose", l.purpose.as_deref()?);
    if let Some(cid) = l.record.get("avatar").and_then(blob_cid) {
        put(&mut m, "avatar", h.config.image_url("avatar", &l.did, cid));
    }
    m.insert("listItemCount".into(), json!(l.item_count.max(0)));
    m.insert("labels".into(), h.record_labels(&l.uri, &l.cid, &l.record));
    if h.viewer.is_some() {
        let mut viewer = Map::new();
        viewer.insert("muted".into(), Value::Bool(l.viewer_muted));
        put_opt(&mut viewer, "blocked", l.viewer_block.as_deref());
        m.insert("viewer".into(), Value::Object(viewer));
    }
    put(&mut m, "indexedAt", &l.indexed_at);
    Some(m)
}

/// `app.bsky.graph.defs#listViewBasic`.
pub fn list_view_basic(h: &Hydrated<'_>, l: &ListInfo) -> Option<Value> {
    common(h, l).map(Value::Object)
}

/// `app.bsky.graph.defs#listView`.
pub fn list_view(h: &Hydrated<'_>, l: &ListInfo) -> Option<Value> {
    let mut m = common(h, l)?;
    m.insert("creator".into(), h.profile_view(&l.did)?);
    let record = &l.record;
    put_opt(
        &mut m,
        "description",
        record.get("description").and_then(Value::as_str),
    );
    if let Some(facets) = record.get("descriptionFacets").filter(|f| f.is_array()) {
        m.insert("descriptionFacets".into(), facets.clone());
    }
    Some(Value::Object(m))
}

/// The short purpose names `getLists` filters by, as stored in the index.
pub fn purpose_token(short: &str) -> Option<&'static str> {
    match short {
        "modlist" => Some("app.bsky.graph.defs#modlist"),
        "curatelist" => Some("app.bsky.graph.defs#curatelist"),
        "referencelist" => Some("app.bsky.graph.defs#referencelist"),
        _ => None,
    }
}
