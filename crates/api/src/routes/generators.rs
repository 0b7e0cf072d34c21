//! app.bsky.feed.*: feed generator records — one, several, or an actor's.
//! Serving the feeds is the generator service's job (`custom_feed` asks it).

use axum::response::Response;
use serde_json::{json, Value};

use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::custom_feed::feed_endpoint;
use crate::routes::fill::Listing;
use crate::routes::keyset::{with_cursor, Keyset};
use crate::routes::{json, Ctx};
use crate::views::feedgen::{generator_view, load_generators};
use crate::views::{Db, Hydrator};

/// Loads generators and their creators and renders the views in `uris`
/// order, leaving out those not served.
pub(crate) async fn generator_views(
    ctx: &Ctx<'_>,
    client: &Db,
    uris: &[String],
) -> XrpcResult<Vec<Value>> {
    let generators = load_generators(client, uris, ctx.viewer()).await?;
    let creators: Vec<String> = generators.values().map(|g| g.did.clone()).collect();
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .with_records(generators.keys().cloned())
        .hydrate(&[], &creators)
        .await?;
    Ok(uris
        .iter()
        .filter_map(|uri| generator_view(&hydrated, generators.get(uri)?))
        .collect())
}

/// As the official AppView: the generator's DID must resolve to a document
/// naming a `#bsky_fg` endpoint (else 400); the service itself is not
/// asked, and is reported online and valid.
pub async fn get_feed_generator(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let uri = ctx.params.at_uri("feed")?;
    let client = ctx.db().await?;
    let not_found = || XrpcError::invalid_request(format!("feed: could not find feed {uri}"));
    let service_did = load_generators(&client, std::slice::from_ref(&uri), None)
        .await?
        .remove(&uri)
        .and_then(|g| g.service_did)
        .ok_or_else(not_found)?;
    feed_endpoint(ctx.state, &service_did).await?;
    let view = generator_views(ctx, &client, std::slice::from_ref(&uri))
        .await?
        .pop()
        .ok_or_else(not_found)?;
    json(&json!({"view": view, "isOnline": true, "isValid": true}))
}

pub async fn get_feed_generators(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let mut uris = ctx.params.at_uris("feeds", 150)?;
    let mut seen = std::collections::HashSet::new();
    uris.retain(|u| seen.insert(u.clone()));
    let client = ctx.db().await?;
    let feeds = generator_views(ctx, &client, &uris).await?;
    json(&json!({ "feeds": feeds }))
}

pub async fn get_actor_feeds(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let actor = ctx.params.actor("actor")?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;
    let sql = format!(
        "SELECT g.uri, g.rkey FROM feed_generators g WHERE g.did = $1 {page}",
        page = page.newest_first("g", 1)
    );
    let rows = page.fetch(&client, &sql, &[&did]).await?;
    let feeds = generator_views(ctx, &client, &rows.column("uri")?).await?;
    Listing::serialize(
        &with_cursor(json!({ "feeds": feeds }), rows.next()?),
        "feeds",
        page.limit,
    )
}
