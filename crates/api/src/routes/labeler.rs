//! app.bsky.labeler.getServices: labeler service records by their DIDs;
//! com.atproto.label.queryLabels: the labels in force on subjects.

use axum::response::Response;
use serde_json::{json, Value};

use crate::cursor::Cursor;
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::{json, Ctx};
use crate::views::labeler::{labeler_view, load_labelers};
use crate::views::labels::Label;
use crate::views::Hydrator;

pub async fn get_services(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let values = ctx.params.strings("dids", 100, 2048)?;
    if values.is_empty() {
        return Err(XrpcError::bad_param("dids", "required"));
    }
    let mut dids: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if !skyhose_proto::syntax::is_did(value) {
            return Err(XrpcError::bad_param(
                "dids",
                format!("{value:?} is not a DID"),
            ));
        }
        if !dids.iter().any(|d| d == value) {
            dids.push(value.to_owned());
        }
    }
    let detailed = ctx.params.bool("detailed", false)?;
    let client = ctx.db().await?;
    let labelers = load_labelers(&client, &dids, ctx.viewer()).await?;
    let creators: Vec<String> = labelers.keys().cloned().collect();
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .with_records(labelers.values().map(|l| l.uri.clone()))
        .hydrate(&[], &creators)
        .await?;
    let views: Vec<Value> = dids
        .iter()
        .filter_map(|did| labeler_view(&hydrated, labelers.get(did)?, detailed))
        .collect();
    json(&json!({ "views": views }))
}

/// Labels in force whose subject is one of `$1`, from the labelers `$2`,
/// after the keyset position (`$3` uri, `$4` labeler id, `$5` value).
const QUERY_LABELS: &str = "
SELECT l.uri, lr.did AS src, l.src AS src_id, l.cid, l.val, l.cts, l.exp
FROM labels l JOIN labelers lr ON lr.id = l.src
WHERE NOT l.neg AND (l.exp IS NULL OR l.exp::timestamptz > now())
  AND l.uri = ANY($1) AND lr.did = ANY($2)
  AND (l.uri, l.src, l.val) > ($3, $4, $5)
ORDER BY l.uri, l.src, l.val
LIMIT $6";

/// The labels in force on the subjects named, from the labelers named; as
/// the official AppView, patterns with wildcards are refused and the
/// labelers are required.
pub async fn query_labels(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let patterns = ctx.params.strings("uriPatterns", 100, 8192)?;
    if patterns.is_empty() {
        return Err(XrpcError::bad_param("uriPatterns", "required"));
    }
    if patterns.iter().any(|p| p.contains('*')) {
        return Err(XrpcError::invalid_request("wildcards not supported"));
    }
    let uris: Vec<String> = patterns.into_iter().map(str::to_owned).collect();
    let sources: Vec<String> = ctx
        .params
        .strings("sources", 100, 2048)?
        .into_iter()
        .map(|s| {
            if skyhose_proto::syntax::is_did(s) {
                Ok(s.to_owned())
            } else {
                Err(XrpcError::bad_param(
                    "sources",
                    format!("{s:?} is not a DID"),
                ))
            }
        })
        .collect::<XrpcResult<_>>()?;
    if sources.is_empty() {
        return Err(XrpcError::invalid_request("source dids are required"));
    }
    let limit = ctx.params.limit(1, 250, 50)?;
    let (after_uri, after_src, after_val) = match ctx.params.cursor()? {
        None => (String::new(), 0i32, String::new()),
        Some(Cursor { key, uri }) => {
            let bad = || XrpcError::bad_param("cursor", "not a cursor this service issued");
            let (src, val) = key.split_once(':').ok_or_else(bad)?;
            (uri, src.parse().map_err(|_| bad())?, val.to_owned())
        }
    };
    let client = ctx.db().await?;
    let rows = client
        .query(
            &client.prepare_cached(QUERY_LABELS).await?,
            &[&uris, &sources, &after_uri, &after_src, &after_val, &limit],
        )
        .await?;
    let mut labels = Vec::with_capacity(rows.len());
    let mut cursor = None;
    for row in &rows {
        let label = Label {
            cid: row.col("cid")?,
            cts: row.col("cts")?,
            exp: row.col("exp")?,
            src: row.col("src")?,
            uri: row.col("uri")?,
            val: row.col("val")?,
        };
        let src_id: i32 = row.col("src_id")?;
        cursor = Some(Cursor::new(format!("{src_id}:{}", label.val), &label.uri));
        labels.push(label);
    }
    let mut body = json!({ "labels": labels });
    if rows.len() as i64 == limit {
        if let Some(cursor) = cursor {
            body["cursor"] = Value::String(cursor.encode());
        }
    }
    json(&body)
}
