//! The operator's dashboard: a static page served at `/` (no build step) that
//! polls `/metrics` and `/stats.json`, which reports database row counts,
//! the index watermark and the latest indexed posts.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::db::RowExt;
use crate::error::XrpcError;
use crate::AppState;

const PAGE: &str = include_str!("dashboard/index.html");

/// Tables whose row counts the dashboard shows, by the name it shows them
/// under. They are the statistics system's live-tuple counts, kept current
/// by every committed insert and delete (within about a second), so the
/// page never scans a table; they are estimates (vacuum and analyze correct
/// them), and the page says so. Posts, likes, reposts and follows count their
/// tombstones too: their tables keep them beside the live rows. Stored
/// notifications leave out likes, reposts and follows, which are their own.
const COUNTED: &[(&str, &str)] = &[
    ("actors", "actors"),
    ("records", "records"),
    ("posts", "post_rows"),
    ("likes", "like_rows"),
    ("reposts", "repost_rows"),
    ("follows", "follow_rows"),
    ("blocks", "blocks"),
    ("lists", "lists"),
    ("list_items", "list_items"),
    ("profiles", "profiles"),
    ("stored notifications", "notifications"),
];

pub async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE)).into_response()
}

pub async fn stats(State(state): State<AppState>) -> Response {
    match load(&state).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn load(state: &AppState) -> Result<Value, XrpcError> {
    let client = state.pool.get().await?;
    let tables: Vec<&str> = COUNTED.iter().map(|(_, table)| *table).collect();
    let rows = client
        .query(
            "SELECT relname::text AS relname, n_live_tup AS estimate FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname = ANY($1)",
            &[&tables],
        )
        .await?;
    let mut counts = Map::new();
    let mut estimates = HashMap::new();
    for row in &rows {
        estimates.insert(row.col::<&str>("relname")?, row.col::<i64>("estimate")?);
    }
    for (name, table) in COUNTED {
        let n = estimates.get(table).copied().unwrap_or(0);
        counts.insert((*name).into(), json!(n));
    }
    let watermark: Option<i64> = client
        .query_opt("SELECT seq FROM index_watermark", &[])
        .await?
        .map(|r| r.col("seq"))
        .transpose()?;
    let recent: Vec<Value> = client
        .query(
            "SELECT p.did, a.handle, left(p.text, 140) AS text, \
                    to_char(p.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS indexed_at \
             FROM posts p LEFT JOIN actors a ON a.did = p.did \
             ORDER BY p.rkey DESC, p.uri DESC LIMIT 10",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(json!({
                "did": r.col::<String>("did")?,
                "handle": r.col::<Option<String>>("handle")?,
                "text": r.col::<Option<String>>("text")?,
                "indexedAt": r.col::<String>("indexed_at")?,
            }))
        })
        .collect::<Result<_, XrpcError>>()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(json!({
        "now": now,
        "counts": counts,
        "countsEstimated": true,
        "watermark": watermark,
        "recent": recent,
    }))
}
