//! app.bsky.graph mutes: of actors, of lists' members and of threads —
//! private state the viewer writes here (migration 0019), never in a repo.
//! Writes are idempotent: muting twice keeps one mute (the latest scope),
//! unmuting what is not muted succeeds.

use axum::response::Response;
use serde_json::json;

use crate::error::{XrpcError, XrpcResult};
use crate::params::ActorRef;
use crate::routes::fill::Listing;
use crate::routes::input::{done, write, Input};
use crate::routes::keyset::{with_cursor, Keyset};
use crate::routes::lists::list_views;
use crate::routes::Ctx;
use crate::views::actor::resolve_actor;
use crate::views::{Db, Hydrator};

/// A private-state listing's statement: `columns` (one named `uri`, the
/// subject) of the rows `rows` (`FROM … WHERE`, one account's, `$1` its
/// DID), newest written first, paged by when they were written (as `rkey`)
/// and then `uri`.
pub(crate) fn newest_written(columns: &str, rows: &str, page: &Keyset) -> String {
    format!(
        "SELECT x.* FROM ( \
           SELECT {columns}, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') AS rkey {rows} \
         ) x WHERE true {page}",
        page = page.newest_first("x", 1)
    )
}

/// The DID of the actor an input names; handles are resolved through the
/// index.
async fn actor_did(client: &Db, actor: &ActorRef) -> XrpcResult<String> {
    match resolve_actor(client, actor).await? {
        Some((did, _)) => Ok(did),
        None => Err(XrpcError::invalid_request("actor: Actor not found")),
    }
}

pub async fn mute_actor(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let actor = input.actor("actor")?;
    let only_reposts = input.optional_bool("onlyReposts")?.unwrap_or(false);
    let only_quoteposts = input.optional_bool("onlyQuoteposts")?.unwrap_or(false);
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    let did = actor_did(&client, &actor).await?;
    if did == viewer {
        return Err(XrpcError::invalid_request(
            "actor: Actor cannot mute themselves",
        ));
    }
    // A repeated mute replaces the scope, as the lexicon says.
    write(
        &mut client,
        "INSERT INTO private_actor_mutes (did, subject_did, only_reposts, only_quoteposts) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (did, subject_did) DO UPDATE \
         SET only_reposts = EXCLUDED.only_reposts, only_quoteposts = EXCLUDED.only_quoteposts",
        &[&viewer, &did, &only_reposts, &only_quoteposts],
    )
    .await?;
    done()
}

pub async fn unmute_actor(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let actor = input.actor("actor")?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    // A DID is unmuted as it is, so that an account gone from the index
    // can still be unmuted.
    let did = match actor {
        ActorRef::Did(did) => did,
        handle => actor_did(&client, &handle).await?,
    };
    write(
        &mut client,
        "DELETE FROM private_actor_mutes WHERE did = $1 AND subject_did = $2",
        &[&viewer, &did],
    )
    .await?;
    done()
}

/// The accounts the viewer mutes fully, newest mute first; scoped mutes
/// are not listed, as the reference AppView does.
pub async fn get_mutes(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let page = Keyset::parse(ctx)?;
    let viewer = ctx.require_viewer()?;
    let client = ctx.db().await?;
    let sql = newest_written(
        "subject_did AS uri",
        "FROM private_actor_mutes WHERE did = $1 AND NOT only_reposts AND NOT only_quoteposts",
        &page,
    );
    let rows = page.fetch(&client, &sql, &[&viewer]).await?;
    let dids = rows.column("uri")?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let mutes: Vec<_> = dids
        .iter()
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    Listing::serialize(
        &with_cursor(json!({ "mutes": mutes }), rows.next()?),
        "mutes",
        page.limit,
    )
}

pub async fn mute_actor_list(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let list = input.at_uri("list")?;
    let viewer = ctx.require_viewer()?;
    // The list need not be indexed (yet), as with the reference AppView:
    // the mute applies once its items are.
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "INSERT INTO private_list_mutes (did, list_uri) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&viewer, &list],
    )
    .await?;
    done()
}

pub async fn unmute_actor_list(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let list = input.at_uri("list")?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "DELETE FROM private_list_mutes WHERE did = $1 AND list_uri = $2",
        &[&viewer, &list],
    )
    .await?;
    done()
}

/// The lists the viewer mutes, newest mute first.
pub async fn get_list_mutes(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let page = Keyset::parse(ctx)?;
    let viewer = ctx.require_viewer()?;
    let client = ctx.db().await?;
    let sql = newest_written(
        "list_uri AS uri",
        "FROM private_list_mutes WHERE did = $1",
        &page,
    );
    let rows = page.fetch(&client, &sql, &[&viewer]).await?;
    let lists = list_views(ctx, &client, &rows.column("uri")?).await?;
    Listing::serialize(
        &with_cursor(json!({ "lists": lists }), rows.next()?),
        "lists",
        page.limit,
    )
}

pub async fn mute_thread(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let root = input.at_uri("root")?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "INSERT INTO private_thread_mutes (did, root_uri) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&viewer, &root],
    )
    .await?;
    done()
}

pub async fn unmute_thread(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let root = input.at_uri("root")?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "DELETE FROM private_thread_mutes WHERE did = $1 AND root_uri = $2",
        &[&viewer, &root],
    )
    .await?;
    done()
}
