//! app.bsky.actor.*: profiles.

use axum::response::Response;
use serde_json::json;

use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::params::ActorRef;
use crate::routes::{json, Ctx};
use crate::views::actor::resolve_actor;
use crate::views::Hydrator;

/// Turns an actor parameter into a served DID, or the error the reference
/// AppView gives for a missing, taken-down or deactivated account.
pub(crate) async fn served_actor(
    client: &crate::views::Db,
    param: &str,
    actor: &ActorRef,
) -> XrpcResult<String> {
    let (did, status) = resolve_actor(client, actor)
        .await?
        .ok_or_else(|| XrpcError::invalid_request(format!("{param}: actor not found")))?;
    check_status(param, did, &status)
}

/// What the reference AppView answers for an account by its status when
/// a method lists the account's things: a taken-down account is not found
/// (only its profile says it was taken down: [`check_profile_status`]).
pub(crate) fn check_status(param: &str, did: String, status: &str) -> XrpcResult<String> {
    match status {
        "takendown" | "suspended" => Err(XrpcError::invalid_request(format!(
            "{param}: actor not found"
        ))),
        _ => check_profile_status(param, did, status),
    }
}

/// What the reference AppView answers for a profile by its account status.
pub(crate) fn check_profile_status(param: &str, did: String, status: &str) -> XrpcResult<String> {
    match status {
        "active" => Ok(did),
        "takendown" | "suspended" => Err(XrpcError::not_found(
            "AccountTakedown",
            format!("{param}: account has been suspended"),
        )),
        "deactivated" => Err(XrpcError::not_found(
            "AccountDeactivated",
            format!("{param}: account is deactivated"),
        )),
        _ => Err(XrpcError::invalid_request(format!(
            "{param}: actor not found"
        ))),
    }
}

pub async fn get_profile(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let actor = ctx.params.actor("actor")?;
    let client = ctx.db().await?;
    // A DID needs no lookup first: the hydration's actor row carries the
    // status, so the common case is a single query.
    let did = match &actor {
        ActorRef::Did(did) => did.clone(),
        ActorRef::Handle(_) => {
            let (did, status) = resolve_actor(&client, &actor)
                .await?
                .ok_or_else(|| XrpcError::invalid_request("actor: actor not found"))?;
            check_profile_status("actor", did, &status)?
        }
    };
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate_detailed(std::slice::from_ref(&did))
        .await?;
    let info = hydrated
        .actors
        .get(&did)
        .ok_or_else(|| XrpcError::invalid_request("actor: actor not found"))?;
    check_profile_status("actor", did.clone(), &info.status)?;
    let profile = hydrated
        .profile_detailed(&did)
        .ok_or_else(|| XrpcError::invalid_request("actor: profile not found"))?;
    json(&profile)
}

pub async fn get_profiles(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let actors = ctx.params.actors("actors", 25)?;
    let client = ctx.db().await?;
    let mut dids = Vec::with_capacity(actors.len());
    let handles: Vec<String> = actors
        .iter()
        .filter_map(|a| match a {
            ActorRef::Handle(h) => Some(h.clone()),
            ActorRef::Did(_) => None,
        })
        .collect();
    let by_handle: std::collections::HashMap<String, String> = if handles.is_empty() {
        Default::default()
    } else {
        client
            .query(
                "SELECT DISTINCT ON (handle) handle, did FROM actors \
                 WHERE handle = ANY($1) AND indexed ORDER BY handle, handle_seq DESC NULLS LAST",
                &[&handles],
            )
            .await?
            .iter()
            .map(|row| Ok((row.col("handle")?, row.col("did")?)))
            .collect::<XrpcResult<_>>()?
    };
    for actor in &actors {
        match actor {
            ActorRef::Did(did) => dids.push(did.clone()),
            ActorRef::Handle(h) => dids.extend(by_handle.get(h).cloned()),
        }
    }
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate_detailed(&dids)
        .await?;
    let profiles: Vec<_> = dids
        .iter()
        .filter_map(|did| hydrated.profile_detailed(did))
        .collect();
    json(&json!({ "profiles": profiles }))
}
