//! app.bsky.graph.*: lists (an actor's, one with its members, the ones the
//! viewer blocks) and the viewer's blocks.

use axum::response::Response;
use serde_json::{json, Value};

use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::interactions::{cursor_params, keyset, next_cursor, with_cursor};
use crate::routes::{json, Ctx};
use crate::views::list::{list_view, load_lists, purpose_token};
use crate::views::{Db, Hydrator};

/// Loads lists and their creators and renders `listView`s in `uris` order,
/// leaving out those not served.
async fn list_views(ctx: &Ctx<'_>, client: &Db, uris: &[String]) -> XrpcResult<Vec<Value>> {
    let lists = load_lists(client, uris, ctx.viewer()).await?;
    let creators: Vec<String> = lists.values().map(|l| l.did.clone()).collect();
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .hydrate(&[], &creators)
        .await?;
    Ok(uris
        .iter()
        .filter_map(|uri| list_view(&hydrated, lists.get(uri)?))
        .collect())
}

pub async fn get_lists(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let actor = ctx.params.actor("actor")?;
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.cursor()?;
    let purposes = ctx
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
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;
    let sql = format!(
        "SELECT l.uri, l.rkey FROM lists l WHERE l.did = $1 {page} \
         AND (cardinality($5::text[]) = 0 OR l.purpose = ANY($5)) \
         ORDER BY l.rkey DESC, l.uri DESC LIMIT $2",
        page = keyset(cursor.is_some(), "l", 3, 4)
    );
    let (key, after) = cursor_params(cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&did, &limit, &key, &after, &purposes])
        .await?;
    let uris: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let lists = list_views(ctx, &client, &uris).await?;
    json(&with_cursor(
        json!({ "lists": lists }),
        next_cursor(&rows, limit, 1, 0),
    ))
}

pub async fn get_list(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let list_uri = ctx.params.at_uri("list")?;
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.cursor()?;
    let client = ctx.db().await?;
    let sql = format!(
        "SELECT li.uri, li.rkey, li.subject_did FROM list_items li \
         WHERE li.list_uri = $1 AND li.subject_did IS NOT NULL {page} \
         ORDER BY li.rkey DESC, li.uri DESC LIMIT $2",
        page = keyset(cursor.is_some(), "li", 3, 4)
    );
    let (key, after) = cursor_params(cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let item_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&list_uri, &limit, &key, &after];
    let (lists, rows) = tokio::try_join!(
        load_lists(&client, std::slice::from_ref(&list_uri), ctx.viewer()),
        client.query(&stmt, &item_params),
    )?;
    let not_found = || XrpcError::invalid_request(format!("list: list not found: {list_uri}"));
    let list = lists.get(&list_uri).ok_or_else(not_found)?;
    let mut dids: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
    dids.push(list.did.clone());
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let view = list_view(&hydrated, list).ok_or_else(not_found)?;
    let items: Vec<Value> = rows
        .iter()
        .filter_map(|row| {
            let subject: String = row.get(2);
            if hydrated.blocked(&subject) {
                return None;
            }
            let profile = hydrated.profile_view(&subject)?;
            Some(json!({"uri": row.get::<_, String>(0), "subject": profile}))
        })
        .collect();
    json(&with_cursor(
        json!({ "list": view, "items": items }),
        next_cursor(&rows, limit, 1, 0),
    ))
}

pub async fn get_list_blocks(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let viewer = ctx.require_viewer()?;
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.cursor()?;
    let client = ctx.db().await?;
    let sql = format!(
        "SELECT lb.list_uri, lb.rkey, lb.uri FROM list_blocks lb \
         WHERE lb.did = $1 AND lb.list_uri IS NOT NULL {page} \
         ORDER BY lb.rkey DESC, lb.uri DESC LIMIT $2",
        page = keyset(cursor.is_some(), "lb", 3, 4)
    );
    let (key, after) = cursor_params(cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&viewer, &limit, &key, &after])
        .await?;
    let uris: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let lists = list_views(ctx, &client, &uris).await?;
    json(&with_cursor(
        json!({ "lists": lists }),
        next_cursor(&rows, limit, 1, 2),
    ))
}

pub async fn get_blocks(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let viewer = ctx.require_viewer()?;
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.cursor()?;
    let client = ctx.db().await?;
    let sql = format!(
        "SELECT b.subject_did, b.rkey, b.uri FROM blocks b \
         WHERE b.did = $1 AND b.subject_did IS NOT NULL {page} \
         ORDER BY b.rkey DESC, b.uri DESC LIMIT $2",
        page = keyset(cursor.is_some(), "b", 3, 4)
    );
    let (key, after) = cursor_params(cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&viewer, &limit, &key, &after])
        .await?;
    let dids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    // Blocked accounts are shown here on purpose: this is the list of them.
    let blocks: Vec<Value> = dids
        .iter()
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    json(&with_cursor(
        json!({ "blocks": blocks }),
        next_cursor(&rows, limit, 1, 2),
    ))
}
