//! app.bsky.notification.*: the viewer's notifications, newest first.
//!
//! The index keeps notifications but not when the viewer last looked at them
//! (that is written through the viewer's PDS, which we are not): without a
//! `seenAt` parameter every notification is unread.

use std::collections::HashMap;

use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::cursor::Cursor;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::interactions::with_cursor;
use crate::routes::{json, Ctx};
use crate::views::{put, put_opt, Db, Hydrator};

/// The reasons the index writes, all `knownValues` of the lexicon.
const REASONS: &[&str] = &[
    "like",
    "repost",
    "follow",
    "mention",
    "reply",
    "quote",
    "like-via-repost",
    "repost-via-repost",
];

/// `indexed_at > $since` when a bound is given, as microseconds since the epoch.
const AFTER_SEEN: &str =
    "($2::int8 IS NULL OR n.indexed_at > 'epoch'::timestamptz + $2::int8 * interval '1 microsecond')";

/// Unread notifications are counted up to this many: each costs a row
/// visit, and no client shows a larger number.
const MAX_UNREAD: i64 = 10_000;

/// The full JSON of each live record in `uris`, in one query.
async fn load_records(client: &Db, uris: &[String]) -> XrpcResult<HashMap<String, Value>> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = client
        .prepare_cached(
            "SELECT r.uri, r.record FROM unnest($1::text[]) AS u(uri) \
             JOIN all_records r ON r.uri = u.uri WHERE r.live AND r.record IS NOT NULL",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&uris])
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

pub async fn list_notifications(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let limit = ctx.params.limit(1, 100, 50)?;
    let reasons: Vec<String> = ctx
        .params
        .strings("reasons", 50, 64)?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let _ = ctx.params.bool("priority", false)?;
    let seen_at = ctx.params.optional_timestamp("seenAt")?;
    let cursor = match ctx.params.cursor()? {
        Some(c) => Some(
            c.key
                .parse::<i64>()
                .map_err(|_| XrpcError::bad_param("cursor", "not a cursor this service issued"))?,
        ),
        None => None,
    };
    let viewer = ctx.require_viewer()?.to_owned();
    let client = ctx.db().await?;
    let reasons = (!reasons.is_empty()).then_some(reasons);
    let stmt = client
        .prepare_cached(
            "SELECT n.id, n.author_did, n.reason, n.reason_subject, n.record_uri, n.record_cid, \
               to_char(n.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
               ($3::int8 IS NOT NULL AND n.indexed_at <= 'epoch'::timestamptz + $3::int8 * interval '1 microsecond') \
             FROM notifications n \
             WHERE n.recipient_did = $1 AND ($2::int8 IS NULL OR n.id < $2) \
               AND ($4::text[] IS NULL OR n.reason = ANY($4)) \
             ORDER BY n.id DESC LIMIT $5",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&viewer, &cursor, &seen_at, &reasons, &limit])
        .await?;

    let authors: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    let record_uris: Vec<String> = rows.iter().map(|r| r.get(4)).collect();
    let hydrator = Hydrator::new(&client, ctx.config(), ctx.viewer());
    let (hydrated, records) = tokio::join!(
        hydrator.hydrate(&[], &authors),
        load_records(&client, &record_uris)
    );
    let (hydrated, records) = (hydrated?, records?);

    let notifications: Vec<Value> = rows
        .iter()
        .filter_map(|row| {
            let author_did: String = row.get(1);
            let reason: String = row.get(2);
            let uri: String = row.get(4);
            if hydrated.blocked(&author_did) || !REASONS.contains(&reason.as_str()) {
                return None;
            }
            let author = hydrated.profile_view(&author_did)?;
            let record = records.get(&uri)?.clone();
            let mut m = Map::new();
            put(&mut m, "uri", &uri);
            put(&mut m, "cid", row.get::<_, String>(5));
            m.insert("author".into(), author);
            put(&mut m, "reason", reason);
            put_opt(&mut m, "reasonSubject", row.get::<_, Option<&str>>(3));
            m.insert("record".into(), record);
            m.insert("isRead".into(), json!(row.get::<_, bool>(7)));
            put(&mut m, "indexedAt", row.get::<_, String>(6));
            m.insert("labels".into(), json!([]));
            Some(Value::Object(m))
        })
        .collect();
    let next = (rows.len() as i64 >= limit)
        .then(|| rows.last())
        .flatten()
        .map(|row| Cursor::new(row.get::<_, i64>(0).to_string(), row.get::<_, String>(4)).encode());
    json(&with_cursor(
        json!({ "notifications": notifications }),
        next,
    ))
}

pub async fn get_unread_count(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let _ = ctx.params.bool("priority", false)?;
    let seen_at = ctx.params.optional_timestamp("seenAt")?;
    let viewer = ctx.require_viewer()?.to_owned();
    let client = ctx.db().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM notifications n \
               WHERE n.recipient_did = $1 AND {AFTER_SEEN} LIMIT {MAX_UNREAD}) unread"
        ))
        .await?;
    let count: i64 = client.query_one(&stmt, &[&viewer, &seen_at]).await?.get(0);
    json(&json!({ "count": count }))
}
