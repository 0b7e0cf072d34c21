//! app.bsky.feed.*: who liked, reposted and quoted a post, and what the
//! viewer liked. Every listing pages newest first by `(rkey, uri)`.

use crate::compact::{account_rows, collection_id, subject_is, until_cursor};
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::fill::Listing;
use crate::routes::keyset::{with_cursor, Keyset, Page};
use crate::routes::Ctx;
use crate::views::hydrate::FeedItem;
use crate::views::{is_datetime, Hydrator};
use serde_json::{json, Map, Value};

/// The parameters getLikes, getRepostedBy and getQuotes share.
struct SubjectPage {
    uri: String,
    cid: Option<String>,
    page: Keyset,
}

impl SubjectPage {
    fn parse(ctx: &Ctx<'_>) -> XrpcResult<Self> {
        Ok(SubjectPage {
            uri: ctx.params.at_uri("uri")?,
            cid: ctx.params.optional_cid("cid")?,
            page: Keyset::parse(ctx)?,
        })
    }

    /// The page of `sql`, whose `$1` is the subject's URI and `$2` its CID.
    async fn fetch(&self, client: &crate::views::Db, sql: &str) -> XrpcResult<Page> {
        self.page.fetch(client, sql, &[&self.uri, &self.cid]).await
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
    async fn interactions(&self, client: &crate::views::Db, table: &str) -> XrpcResult<Page> {
        let sql = format!(
            "SELECT x.uri, x.rkey, x.did, x.created_at, \
               to_char(x.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS indexed_at \
             FROM {table} x WHERE {subject} AND ($2::text IS NULL OR x.subject_cid = $2) {page}",
            // the subject index's order, bounded at the cursor's position
            subject = until_cursor(subject_is("x", "$1"), "x", self.page.key_param(2)),
            page = self.page.newest_first_by("x", "rkey_id", 2)
        );
        self.fetch(client, &sql).await
    }
}

pub async fn get_likes(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let page = SubjectPage::parse(ctx)?;
    let client = ctx.db().await?;
    let rows = page.interactions(&client, "likes").await?;
    let dids = rows.column("did")?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let mut likes: Vec<Value> = Vec::with_capacity(rows.rows.len());
    for (row, did) in rows.rows.iter().zip(&dids) {
        if hydrated.blocked(did) {
            continue;
        }
        let Some(actor) = hydrated.profile_view(did) else {
            continue;
        };
        let indexed_at: String = row.col("indexed_at")?;
        let created_at = row
            .col::<Option<String>>("created_at")?
            .filter(|c| is_datetime(c))
            .unwrap_or_else(|| indexed_at.clone());
        likes.push(json!({"indexedAt": indexed_at, "createdAt": created_at, "actor": actor}));
    }
    Listing::serialize(
        &page.output("likes", likes, rows.next()?),
        "likes",
        page.page.limit,
    )
}

pub async fn get_reposted_by(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let page = SubjectPage::parse(ctx)?;
    let client = ctx.db().await?;
    let rows = page.interactions(&client, "reposts").await?;
    let dids = rows.column("did")?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let actors: Vec<Value> = dids
        .iter()
        .filter(|did| !hydrated.blocked(did))
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    Listing::serialize(
        &page.output("repostedBy", actors, rows.next()?),
        "repostedBy",
        page.page.limit,
    )
}

pub async fn get_quotes(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let page = SubjectPage::parse(ctx)?;
    let client = ctx.db().await?;
    // As the official AppView, a deleted post has no quotes listed (its
    // deletion drops them), while its quotes still show it as deleted.
    let sql = format!(
        "SELECT p.uri, p.rkey FROM posts p \
         WHERE p.embed_record_uri = $1 AND ($2::text IS NULL OR p.embed_record_cid = $2) \
         AND EXISTS (SELECT 1 FROM posts s WHERE s.uri = $1) {page}",
        page = page.page.newest_first("p", 2)
    );
    let rows = page.fetch(&client, &sql).await?;
    let uris = rows.column("uri")?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&uris, &[])
        .await?;
    // A quote the quoted author detached with a postgate is still listed,
    // as the official AppView lists it: its embed shows the detachment.
    let posts: Vec<Value> = uris
        .iter()
        .filter(|uri| {
            hydrated
                .posts
                .get(*uri)
                .is_some_and(|p| !hydrated.blocked(&p.did))
        })
        .filter_map(|uri| hydrated.post_view(uri))
        .collect();
    Listing::serialize(
        &page.output("posts", posts, rows.next()?),
        "posts",
        page.page.limit,
    )
}

/// The viewer's own likes only, as the reference AppView serves them: to
/// anyone else, the viewer without a token included, the actor's likes
/// are as absent as an unknown actor's.
pub async fn get_actor_likes(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let actor = ctx.params.actor("actor")?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;
    if ctx.viewer() != Some(did.as_str()) {
        return Err(XrpcError::invalid_request(
            "actor: profile not found (only the viewer's own likes are listed)",
        ));
    }
    let sql = format!(
        "SELECT l.uri, l.rkey, l.subject_uri FROM likes l \
         WHERE {range} AND l.subject_collection = {posts} {after} \
         ORDER BY l.rkey_id DESC LIMIT {limit}",
        range = account_rows("l", "$1", page.key_param(1)),
        posts = collection_id("'app.bsky.feed.post'"),
        after = page.after("l", 1),
        limit = Keyset::limit_param(1)
    );
    let rows = page.fetch(&client, &sql, &[&did]).await?;
    let items: Vec<FeedItem> = rows
        .column("subject_uri")?
        .into_iter()
        .map(|post_uri| FeedItem {
            post_uri,
            reason: None,
        })
        .collect();
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate_feed(&items)
        .await?;
    Listing::serialize(
        &hydrated.feed_page(&items, rows.next()?),
        "feed",
        page.limit,
    )
}
