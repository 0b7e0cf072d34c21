//! Starter packs: loading them with the counts of the accounts that joined
//! through them in one query, and rendering
//! `app.bsky.graph.defs#starterPackViewBasic` and (with the list, a sample
//! of its members and its feeds, loaded by the caller) `#starterPackView`.
//! As the official AppView, an account joined through a pack when its
//! profile's `joinedViaStarterPack` names the pack, and in the last week
//! when the profile's `createdAt` is that recent; neither view shows the
//! list's item count.

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
    /// Accounts that joined through the pack: ever, and in the last week.
    pub joined_all_time: i64,
    pub joined_week: i64,
}

const STARTER_PACK_QUERY: &str = "\
SELECT s.uri, s.cid, s.did, r.record, \
       to_char(s.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS indexed_at, \
       s.list_uri, \
       j.all_time AS joined_all_time, j.week AS joined_week \
FROM unnest($1::text[]) AS u(uri) \
CROSS JOIN LATERAL ( \
  SELECT count(*) AS all_time, \
         count(*) FILTER (WHERE pr.created_at > to_char((now() - interval '7 days') AT TIME ZONE 'UTC', \
                                                        'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')) AS week \
  FROM profiles pr WHERE pr.joined_via_starter_pack_uri = u.uri) j \
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
                joined_all_time: row.col("joined_all_time")?,
                joined_week: row.col("joined_week")?,
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
    m.insert("joinedAllTimeCount".into(), json!(s.joined_all_time));
    m.insert("joinedWeekCount".into(), json!(s.joined_week));
    m.insert("labels".into(), h.record_labels(&s.uri, &s.cid, &s.record));
    put(&mut m, "indexedAt", &s.indexed_at);
    Some(m)
}

/// `app.bsky.graph.defs#starterPackViewBasic`.
pub fn starter_pack_view_basic(h: &Hydrated<'_>, s: &StarterPackInfo) -> Option<Value> {
    common(h, s).map(Value::Object)
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
