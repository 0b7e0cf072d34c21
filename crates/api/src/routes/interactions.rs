//! app.bsky.feed.*: who liked, reposted and quoted a post, and what the
//! viewer liked. Every listing pages newest first by `(rkey, uri)`.

use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio_postgres::Row;

use crate::cursor::Cursor;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::{json, Ctx};
use crate::views::hydrate::FeedItem;
use crate::views::{is_datetime, Hydrator};

/// `AND (alias.rkey, alias.uri) < ($key, $uri)` with a cursor; without one, a
/// clause that keeps the statement's parameter list the same.
pub(crate) fn keyset(has_cursor: bool, alias: &str, key: usize, uri: usize) -> String {
    if has_cursor {
        format!("AND ({alias}.rkey, {alias}.uri) < (${key}, ${uri})")
    } else {
        format!("AND ${key}::text IS NULL AND ${uri}::text IS NULL")
    }
}

/// One account's records of one collection, as a range of the uri primary
/// key: `at://<did>/<collection>/<rkey>` sorts by rkey within the account
/// and collection (the database sorts text in byte order; migration 0012),
/// so `ORDER BY alias.uri DESC` lists them newest first. `did` is an SQL
/// expression. With a cursor (`$key`, its rkey) the range ends there, so a
/// page starts at its position instead of reading past the earlier pages;
/// `keyset` still decides ties exactly.
pub(crate) fn account_records(
    alias: &str,
    did: &str,
    collection: &str,
    cursor_key: Option<usize>,
) -> String {
    let prefix = format!("('at://' || {did} || '/{collection}/')");
    let end = match cursor_key {
        Some(key) => format!("{alias}.uri <= ({prefix} || ${key})"),
        None => format!("{alias}.uri < ('at://' || {did} || '/{collection}0')"),
    };
    format!("{alias}.uri > {prefix} AND {end}")
}

/// The cursor's `(key, uri)` as statement parameters.
pub(crate) fn cursor_params(cursor: Option<&Cursor>) -> (Option<String>, Option<String>) {
    match cursor {
        Some(c) => (Some(c.key.clone()), Some(c.uri.clone())),
        None => (None, None),
    }
}

/// The next page's cursor, from the last row's `(key, uri)` columns; only a
/// full page can have a next one.
pub(crate) fn next_cursor(rows: &[Row], limit: i64, key: usize, uri: usize) -> Option<String> {
    if (rows.len() as i64) < limit {
        return None;
    }
    let last = rows.last()?;
    Some(Cursor::new(last.get::<_, String>(key), last.get::<_, String>(uri)).encode())
}

/// Adds `cursor` to a listing's output when there is a next page.
pub(crate) fn with_cursor(mut out: Value, next: Option<String>) -> Value {
    if let Some(next) = next {
        out["cursor"] = json!(next);
    }
    out
}

/// The parameters getLikes, getRepostedBy and getQuotes share.
struct SubjectPage {
    uri: String,
    cid: Option<String>,
    limit: i64,
    cursor: Option<Cursor>,
}

impl SubjectPage {
    fn parse(ctx: &Ctx<'_>) -> XrpcResult<Self> {
        Ok(SubjectPage {
            uri: ctx.params.at_uri("uri")?,
            cid: ctx.params.optional_cid("cid")?,
            limit: ctx.params.limit(1, 100, 50)?,
            cursor: ctx.params.cursor()?,
        })
    }

    /// The output's `uri` and `cid`, echoing the request as the reference does.
    fn output(&self, key: &str, items: Vec<Value>, next: Option<String>) -> Value {
        let mut out = Map::new();
        out.insert("uri".into(), json!(self.uri));
        if let Some(cid) = &self.cid {
            out.insert("cid".into(), json!(cid));
        }
        out.insert(key.into(), Value::Array(items));
        with_cursor(Value::Object(out), next)
    }

    /// Rows `(uri, rkey, did, created_at, indexed_at)` of `table` whose subject
    /// is the requested post, newest first.
    async fn interactions(&self, client: &crate::views::Db, table: &str) -> XrpcResult<Vec<Row>> {
        let sql = format!(
            "SELECT x.uri, x.rkey, x.did, x.created_at, \
               to_char(x.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
             FROM {table} x WHERE x.subject_uri = $1 AND ($2::text IS NULL OR x.subject_cid = $2) {page} \
             ORDER BY x.rkey DESC, x.uri DESC LIMIT $3",
            page = keyset(self.cursor.is_some(), "x", 4, 5)
        );
        let (key, after) = cursor_params(self.cursor.as_ref());
        let stmt = client.prepare_cached(&sql).await?;
        Ok(client
            .query(&stmt, &[&self.uri, &self.cid, &self.limit, &key, &after])
            .await?)
    }
}

pub async fn get_likes(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let page = SubjectPage::parse(ctx)?;
    let client = ctx.db().await?;
    let rows = page.interactions(&client, "likes").await?;
    let dids: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let likes: Vec<Value> = rows
        .iter()
        .filter_map(|row| {
            let did: String = row.get(2);
            if hydrated.blocked(&did) {
                return None;
            }
            let actor = hydrated.profile_view(&did)?;
            let indexed_at: String = row.get(4);
            let created_at = row
                .get::<_, Option<String>>(3)
                .filter(|c| is_datetime(c))
                .unwrap_or_else(|| indexed_at.clone());
            Some(json!({"indexedAt": indexed_at, "createdAt": created_at, "actor": actor}))
        })
        .collect();
    let next = next_cursor(&rows, page.limit, 1, 0);
    json(&page.output("likes", likes, next))
}

pub async fn get_reposted_by(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let page = SubjectPage::parse(ctx)?;
    let client = ctx.db().await?;
    let rows = page.interactions(&client, "reposts").await?;
    let dids: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let actors: Vec<Value> = dids
        .iter()
        .filter(|did| !hydrated.blocked(did))
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    let next = next_cursor(&rows, page.limit, 1, 0);
    json(&page.output("repostedBy", actors, next))
}

pub async fn get_quotes(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let page = SubjectPage::parse(ctx)?;
    let client = ctx.db().await?;
    let sql = format!(
        "SELECT p.uri, p.rkey FROM posts p \
         WHERE p.embed_record_uri = $1 AND ($2::text IS NULL OR p.embed_record_cid = $2) {keyset} \
         ORDER BY p.rkey DESC, p.uri DESC LIMIT $3",
        keyset = keyset(page.cursor.is_some(), "p", 4, 5)
    );
    let (key, after) = cursor_params(page.cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&page.uri, &page.cid, &page.limit, &key, &after])
        .await?;
    let uris: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&uris, &[])
        .await?;
    // A quote the quoted author detached with a postgate no longer quotes it.
    let posts: Vec<Value> = uris
        .iter()
        .filter(|uri| {
            hydrated
                .posts
                .get(*uri)
                .is_some_and(|p| !hydrated.blocked(&p.did) && !p.detached_by_quoted)
        })
        .filter_map(|uri| hydrated.post_view(uri))
        .collect();
    let next = next_cursor(&rows, page.limit, 1, 0);
    json(&page.output("posts", posts, next))
}

/// The viewer's own likes only, as the reference AppView serves them.
pub async fn get_actor_likes(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let actor = ctx.params.actor("actor")?;
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.cursor()?;
    let viewer = ctx.require_viewer()?;
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;
    if did != viewer {
        return Err(XrpcError::invalid_request(
            "actor: profile not found (only the viewer's own likes are listed)",
        ));
    }
    let sql = format!(
        "SELECT l.uri, l.rkey, l.subject_uri FROM likes l \
         WHERE {range} AND l.subject_uri LIKE 'at://%/app.bsky.feed.post/%' {page} \
         ORDER BY l.uri DESC LIMIT $2",
        range = account_records(
            "l",
            "$1",
            "app.bsky.feed.like",
            cursor.is_some().then_some(3)
        ),
        page = keyset(cursor.is_some(), "l", 3, 4)
    );
    let (key, after) = cursor_params(cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &[&did, &limit, &key, &after]).await?;
    let items: Vec<FeedItem> = rows
        .iter()
        .map(|row| FeedItem {
            post_uri: row.get(2),
            reason: None,
        })
        .collect();
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate_feed(&items)
        .await?;
    let next = next_cursor(&rows, limit, 1, 0);
    json(&hydrated.feed_page(&items, next))
}
