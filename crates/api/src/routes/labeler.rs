//! app.bsky.labeler.getServices: labeler service records by their DIDs.

use axum::response::Response;
use serde_json::{json, Value};

use crate::error::{XrpcError, XrpcResult};
use crate::routes::{json, Ctx};
use crate::views::labeler::{labeler_view, load_labelers};
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
