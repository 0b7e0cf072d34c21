//! Starter packs: loading them with their list's item count in one query,
//! and rendering `app.bsky.graph.defs#starterPackViewBasic` and (with the
//! list, a sample of its members and its feeds, loaded by the caller)
//! `#starterPackView`. We do not index who joined through a pack, so the
//! optional join counts are left out.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::{put, Db, Hydrated};

#[derive(Debug, Clone)]
pub struct StarterPackInfo {
    pub uri: String,
    pub cid: String,
    pub did: String,
    pub record: Value,
    pub indexed_at: String,
    pub list_uri: Option<String>,
    /// Feed generator URIs named by the record, in its order.
    pub feeds: Vec<String>,
    pub list_item_count: i64,
}

const STARTER_PACK_QUERY: &str = "\
SELECT s.uri, s.cid, s.did, r.record, \
       to_char(s.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS indexed_at, \
       s.list_uri, \
       (SELECT count(*) FROM list_items li WHERE li.list_uri = s.list_uri) AS list_item_count \
FROM unnest($1::text[]) AS u(uri) \
JOIN starter_packs s ON s.uri = u.uri \
JOIN records r ON r.uri = s.uri";

/// Loads the given starter packs in one query; unknown URIs are absent.
pub async fn load_starter_packs(
    client: &Db,
    uris: &[String],
) -> XrpcResult<HashMap<String, StarterPackInfo>> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(&client.prepare_cached(STARTER_PACK_QUERY).await?, &[&uris])
        .await?;
    rows.iter()
        .map(|row| {
            let record = row.col::<Option<Value>>("record")?.unwrap_or(Value::Null);
            let feeds = record
                .get("feeds")
                .and_then(Value::as_array)
                .map(|feeds| {
                    feeds
                        .iter()
                        .filter_map(|f| f.get("uri").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let info = StarterPackInfo {
                uri: row.col("uri")?,
                cid: row.col("cid")?,
                did: row.col("did")?,
                record,
                indexed_at: row.col("indexed_at")?,
                list_uri: row.col("list_uri")?,
                feeds,
                list_item_count: row.col("list_item_count")?,
            };
            Ok((info.uri.clone(), info))
        })
        .collect()
}

fn common(h: &Hydrated<'_>, s: &StarterPackInfo) -> Option<Map<String, Value>> {
    if h.blocked(&s.did) || !s.record.is_object() {
        return None;
    }
    let mut m = Map::new();
    put(&mut m, "uri", &s.uri);
    put(&mut m, "cid", &s.cid);
    m.insert("record".into(), s.record.clone());
    m.insert("creator".into(), h.profile_basic(&s.did)?);
    m.insert("labels".into(), h.record_labels(&s.uri, &s.cid, &s.record));
    put(&mut m, "indexedAt", &s.indexed_at);
    Some(m)
}

/// `app.bsky.graph.defs#starterPackViewBasic`.
pub fn starter_pack_view_basic(h: &Hydrated<'_>, s: &StarterPackInfo) -> Option<Value> {
    let mut m = common(h, s)?;
    m.insert("listItemCount".into(), json!(s.list_item_count.max(0)));
    Some(Value::Object(m))
}

/// `app.bsky.graph.defs#starterPackView`, from the pack's rendered list
/// (`listViewBasic`), member sample (`listItemView`s) and feeds
/// (`generatorView`s).
pub fn starter_pack_view(
    h: &Hydrated<'_>,
    s: &StarterPackInfo,
    list: Option<Value>,
    sample: Vec<Value>,
    feeds: Vec<Value>,
) -> Option<Value> {
    let mut m = common(h, s)?;
    if let Some(list) = list {
        m.insert("list".into(), list);
    }
    m.insert("listItemsSample".into(), Value::Array(sample));
    m.insert("feeds".into(), Value::Array(feeds));
    Some(Value::Object(m))
}
