//! app.bsky.graph.*: lists (an actor's, one with its members, the ones the
//! viewer blocks) and the viewer's blocks.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::fill::Listing;
use crate::routes::keyset::{with_cursor, Keyset};
use crate::routes::Ctx;
use crate::views::actor::blocks_with;
use crate::views::list::{list_view, load_lists, purpose_token};
use crate::views::{Db, Hydrator};

/// Loads lists and their creators and renders `listView`s in `uris` order,
/// leaving out those not served.
pub(crate) async fn list_views(
    ctx: &Ctx<'_>,
    client: &Db,
    uris: &[String],
) -> XrpcResult<Vec<Value>> {
    let lists = load_lists(client, uris, ctx.viewer()).await?;
    let creators: Vec<String> = lists.values().map(|l| l.did.clone()).collect();
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .with_records(lists.keys().cloned())
        .hydrate(&[], &creators)
        .await?;
    Ok(uris
        .iter()
        .filter_map(|uri| list_view(&hydrated, lists.get(uri)?))
        .collect())
}

pub async fn get_lists(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let actor = ctx.params.actor("actor")?;
    let page = Keyset::parse(ctx)?;
    let asked = ctx
        .params
        .strings("purposes", 10, 64)?
        .into_iter()
        .map(|p| {
            purpose_token(p).ok_or_else(|| {
                XrpcError::bad_param(
                    "purposes",
                    "values are modlist, curatelist or referencelist",
                )
            })
        })
        .collect::<XrpcResult<Vec<&str>>>()?;
    // As the official AppView, only moderation and curation lists are
    // listed (both when none is asked for): a reference list, which a
    // starter pack makes, never is.
    let listed = [purpose_token("modlist"), purpose_token("curatelist")];
    let purposes: Vec<&str> = if asked.is_empty() {
        listed.into_iter().flatten().collect()
    } else {
        asked
            .into_iter()
            .filter(|p| listed.contains(&Some(*p)))
            .collect()
    };
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;
    let sql = format!(
        "SELECT l.uri, l.rkey FROM lists l WHERE l.did = $1 \
         AND l.purpose = ANY($2) {page}",
        page = page.newest_first("l", 2)
    );
    let rows = page.fetch(&client, &sql, &[&did, &purposes]).await?;
    let lists = list_views(ctx, &client, &rows.column("uri")?).await?;
    Listing::serialize(
        &with_cursor(json!({ "lists": lists }), rows.next()?),
        "lists",
        page.limit,
    )
}

pub async fn get_list(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let list_uri = ctx.params.at_uri("list")?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let sql = format!(
        "SELECT li.uri, li.rkey, li.subject_did FROM list_items li \
         WHERE li.list_uri = $1 AND li.subject_did IS NOT NULL {page}",
        page = page.newest_first("li", 1)
    );
    let own: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&list_uri];
    let (lists, rows) = tokio::try_join!(
        load_lists(&client, std::slice::from_ref(&list_uri), ctx.viewer()),
        page.fetch(&client, &sql, &own),
    )?;
    let not_found = || XrpcError::invalid_request(format!("list: list not found: {list_uri}"));
    let list = lists.get(&list_uri).ok_or_else(not_found)?;
    let subjects = rows.column("subject_did")?;
    let mut dids = subjects.clone();
    dids.push(list.did.clone());
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .with_records([list_uri.clone()])
        .hydrate(&[], &dids)
        .await?;
    let view = list_view(&hydrated, list).ok_or_else(not_found)?;
    // As the official AppView: a moderation list shows all its members; a
    // curation or reference list, to anyone but its creator, leaves out
    // the members who block its creator or whom its creator blocks.
    let hidden = if ctx.viewer() == Some(list.did.as_str())
        || list.purpose.as_deref() == purpose_token("modlist")
    {
        HashSet::new()
    } else {
        blocks_with(&client, &list.did, &subjects).await?
    };
    let mut items: Vec<Value> = Vec::with_capacity(subjects.len());
    for (row, subject) in rows.rows.iter().zip(&subjects) {
        if hidden.contains(subject) {
            continue;
        }
        if let Some(profile) = hydrated.profile_view(subject) {
            items.push(json!({"uri": row.col::<String>("uri")?, "subject": profile}));
        }
    }
    Listing::serialize(
        &with_cursor(json!({ "list": view, "items": items }), rows.next()?),
        "items",
        page.limit,
    )
}

pub async fn get_list_blocks(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let viewer = ctx.require_viewer()?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let sql = format!(
        "SELECT lb.list_uri, lb.rkey, lb.uri FROM list_blocks lb \
         WHERE lb.did = $1 AND lb.list_uri IS NOT NULL {page}",
        page = page.newest_first("lb", 1)
    );
    let rows = page.fetch(&client, &sql, &[&viewer]).await?;
    let lists = list_views(ctx, &client, &rows.column("list_uri")?).await?;
    Listing::serialize(
        &with_cursor(json!({ "lists": lists }), rows.next()?),
        "lists",
        page.limit,
    )
}

pub async fn get_blocks(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let viewer = ctx.require_viewer()?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let sql = format!(
        "SELECT b.subject_did, b.rkey, b.uri FROM blocks b \
         WHERE b.did = $1 AND b.subject_did IS NOT NULL {page}",
        page = page.newest_first("b", 1)
    );
    let rows = page.fetch(&client, &sql, &[&viewer]).await?;
    let dids = rows.column("subject_did")?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    // Blocked accounts are shown here on purpose: this is the list of them.
    let blocks: Vec<Value> = dids
        .iter()
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    Listing::serialize(
        &with_cursor(json!({ "blocks": blocks }), rows.next()?),
        "blocks",
        page.limit,
    )
}
