//! com.atproto.identity.resolveHandle and com.atproto.repo.getRecord, answered
//! from the index (handles from `#identity` events, records from `records`).

use axum::response::Response;
use serde_json::json;
use skyhose_proto::syntax;

use crate::compact::live_records;
use crate::error::{XrpcError, XrpcResult};
use crate::params::ActorRef;
use crate::routes::{json, Ctx};
use crate::views::actor::resolve_actor;

pub async fn resolve_handle(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let handle = ctx.params.required("handle")?;
    syntax::validate_handle(handle).map_err(|e| XrpcError::bad_param("handle", e))?;
    let client = ctx.db().await?;
    let actor = ActorRef::Handle(handle.to_ascii_lowercase());
    match resolve_actor(&client, &actor).await? {
        Some((did, _)) => json(&json!({ "did": did })),
        None => Err(XrpcError::handle_not_found(handle)),
    }
}

pub async fn get_record(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let repo = ctx.params.actor("repo")?;
    let collection = ctx.params.required("collection")?;
    syntax::validate_nsid(collection).map_err(|e| XrpcError::bad_param("collection", e))?;
    let rkey = ctx.params.required("rkey")?;
    syntax::validate_record_key(rkey).map_err(|e| XrpcError::bad_param("rkey", e))?;
    let cid = ctx.params.optional_cid("cid")?;
    let client = ctx.db().await?;
    let not_found = || {
        XrpcError::not_found(
            "RecordNotFound",
            format!("record not found: {collection}/{rkey}"),
        )
    };
    let (did, status) = resolve_actor(&client, &repo).await?.ok_or_else(not_found)?;
    if status != "active" {
        return Err(not_found());
    }
    let uri = format!("at://{did}/{collection}/{rkey}");
    let (live_cid, value) = live_records(&client, std::slice::from_ref(&uri))
        .await?
        .remove(&uri)
        .ok_or_else(not_found)?;
    if cid.is_some() && cid != live_cid {
        return Err(not_found());
    }
    let mut out = json!({ "uri": uri, "value": value });
    if let Some(c) = live_cid {
        out["cid"] = json!(c);
    }
    json(&out)
}
