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
        .hydrate(&[], &creators)
        .await?;
    let views: Vec<Value> = dids
        .iter()
        .filter_map(|did| labeler_view(&hydrated, labelers.get(did)?, detailed))
        .collect();
    json(&json!({ "views": views }))
}

/// Labels in force whose subject is one of `$1` or matches one of the
/// `LIKE` patterns `$2`, from the labelers `$3` (any when empty), after the
/// keyset position (`$4` uri, `$5` labeler id, `$6` value).
const QUERY_LABELS: &str = "
SELECT l.uri, lr.did AS src, l.src AS src_id, l.cid, l.val, l.cts, l.exp
FROM labels l JOIN labelers lr ON lr.id = l.src
WHERE NOT l.neg AND (l.exp IS NULL OR l.exp::timestamptz > now())
  AND (l.uri = ANY($1) OR l.uri LIKE ANY($2))
  AND (cardinality($3::text[]) = 0 OR lr.did = ANY($3))
  AND (l.uri, l.src, l.val) > ($4, $5, $6)
ORDER BY l.uri, l.src, l.val
LIMIT $7";

pub async fn query_labels(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let patterns = ctx.params.strings("uriPatterns", 100, 8192)?;
    if patterns.is_empty() {
        return Err(XrpcError::bad_param("uriPatterns", "required"));
    }
    let mut exact: Vec<String> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    for pattern in patterns {
        match pattern.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                return Err(XrpcError::bad_param(
                    "uriPatterns",
                    format!("{pattern:?}: `*` is allowed only at the end"),
                ))
            }
            Some(prefix) => prefixes.push(format!("{}%", like_escape(prefix))),
            None if pattern.contains('*') => {
                return Err(XrpcError::bad_param(
                    "uriPatterns",
                    format!("{pattern:?}: `*` is allowed only at the end"),
                ))
            }
            None => exact.push(pattern.to_owned()),
        }
    }
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
            &[
                &exact, &prefixes, &sources, &after_uri, &after_src, &after_val, &limit,
            ],
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

/// `prefix` with `LIKE`'s special characters taken literally.
fn like_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
