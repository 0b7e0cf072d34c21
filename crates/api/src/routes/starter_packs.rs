//! app.bsky.graph.*: starter packs — one in full, several, or an actor's.

use std::collections::HashSet;

use axum::response::Response;
use serde_json::{json, Value};
use tokio_postgres::Row;

use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::fill::Listing;
use crate::routes::keyset::{with_cursor, Keyset};
use crate::routes::{json, Ctx};
use crate::views::actor::blocks_with;
use crate::views::feedgen::{generator_view, load_generators};
use crate::views::list::{list_view_basic, load_lists};
use crate::views::starter_pack::{load_starter_packs, starter_pack_view, starter_pack_view_basic};
use crate::views::{Db, Hydrator};

/// Members shown in a starter pack's `listItemsSample`.
const SAMPLE_SIZE: usize = 12;

/// The list's newest members the sample is chosen from (the most followed
/// of them), as the official AppView chooses it.
const SAMPLE_FROM: i64 = 50;

async fn basic_views(ctx: &Ctx<'_>, client: &Db, uris: &[String]) -> XrpcResult<Vec<Value>> {
    let packs = load_starter_packs(client, uris).await?;
    let creators: Vec<String> = packs.values().map(|p| p.did.clone()).collect();
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .with_records(packs.keys().cloned())
        .hydrate(&[], &creators)
        .await?;
    Ok(uris
        .iter()
        .filter_map(|uri| starter_pack_view_basic(&hydrated, packs.get(uri)?))
        .collect())
}

pub async fn get_starter_pack(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let uri = ctx.params.at_uri("starterPack")?;
    let client = ctx.db().await?;
    let not_found =
        || XrpcError::invalid_request(format!("starterPack: starter pack not found: {uri}"));
    let packs = load_starter_packs(&client, std::slice::from_ref(&uri)).await?;
    let pack = packs.get(&uri).ok_or_else(not_found)?;
    let list_uris: Vec<String> = pack.list_uri.iter().cloned().collect();
    let stmt = client
        .prepare_cached(
            "SELECT li.uri, li.subject_did FROM list_items li \
             WHERE li.list_uri = $1 AND li.subject_did IS NOT NULL \
             ORDER BY li.rkey DESC, li.uri DESC LIMIT $2",
        )
        .await?;
    let members =
        async { Ok::<_, XrpcError>(client.query(&stmt, &[&pack.list_uri, &SAMPLE_FROM]).await?) };
    let (lists, members, generators) = tokio::try_join!(
        load_lists(&client, &list_uris, ctx.viewer()),
        members,
        load_generators(&client, &pack.feeds, ctx.viewer()),
    )?;
    let subjects = members
        .iter()
        .map(|row| row.col("subject_did"))
        .collect::<XrpcResult<Vec<String>>>()?;
    // Members who block the list's creator or whom it blocks are left out
    // of the sample, unless the creator is the viewer (as the official
    // AppView chooses it).
    let list_creator = pack.list_uri.as_deref().and_then(crate::views::uri_did);
    let hidden = match list_creator {
        Some(creator) if ctx.viewer() != Some(creator) => {
            blocks_with(&client, creator, &subjects).await?
        }
        _ => HashSet::new(),
    };
    let mut dids = subjects.clone();
    dids.push(pack.did.clone());
    dids.extend(lists.values().map(|l| l.did.clone()));
    dids.extend(generators.values().map(|g| g.did.clone()));
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .with_records(
            std::iter::once(uri.clone())
                .chain(lists.keys().cloned())
                .chain(generators.keys().cloned()),
        )
        .hydrate(&[], &dids)
        .await?;
    let list = pack
        .list_uri
        .as_ref()
        .and_then(|u| lists.get(u))
        .and_then(|l| list_view_basic(&hydrated, l));
    // The most followed first; a stable sort keeps the newest first among
    // equals.
    let mut chosen: Vec<(&Row, &String)> = members
        .iter()
        .zip(&subjects)
        .filter(|(_, subject)| !hidden.contains(*subject))
        .collect();
    let followers = |did: &str| hydrated.actors.get(did).map_or(0, |a| a.followers);
    chosen.sort_by_key(|(_, subject)| std::cmp::Reverse(followers(subject)));
    let mut sample: Vec<Value> = Vec::with_capacity(SAMPLE_SIZE);
    for (row, subject) in chosen.into_iter().take(SAMPLE_SIZE) {
        if let Some(profile) = hydrated.profile_view(subject) {
            sample.push(json!({"uri": row.col::<String>("uri")?, "subject": profile}));
        }
    }
    let feeds: Vec<Value> = pack
        .feeds
        .iter()
        .filter_map(|u| generator_view(&hydrated, generators.get(u)?))
        .collect();
    let view = starter_pack_view(&hydrated, pack, list, sample, feeds).ok_or_else(not_found)?;
    json(&json!({ "starterPack": view }))
}

pub async fn get_starter_packs(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let mut uris = ctx.params.at_uris("uris", 25)?;
    let mut seen = std::collections::HashSet::new();
    uris.retain(|u| seen.insert(u.clone()));
    let client = ctx.db().await?;
    let packs = basic_views(ctx, &client, &uris).await?;
    json(&json!({ "starterPacks": packs }))
}

pub async fn get_actor_starter_packs(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let actor = ctx.params.actor("actor")?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;
    let sql = format!(
        "SELECT s.uri, s.rkey FROM starter_packs s WHERE s.did = $1 {page}",
        page = page.newest_first("s", 1)
    );
    let rows = page.fetch(&client, &sql, &[&did]).await?;
    let packs = basic_views(ctx, &client, &rows.column("uri")?).await?;
    Listing::serialize(
        &with_cursor(json!({ "starterPacks": packs }), rows.next()?),
        "starterPacks",
        page.limit,
    )
}
