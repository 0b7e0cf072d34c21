//! app.bsky.feed.*: the viewer's following timeline and list feeds — posts
//! (and for the timeline, reposts) of a set of accounts, newest first.
//!
//! Each account contributes at most one page of its newest rows (a
//! backward index scan each: posts by `(did, rkey DESC)`, reposts by the
//! range of their uris), and the page is the newest of those, so the work
//! grows with the number of accounts, not with their post counts.

use axum::response::Response;
use tokio_postgres::Row;

use crate::error::{XrpcError, XrpcResult};
use crate::routes::interactions::{account_records, cursor_params, keyset, next_cursor};
use crate::routes::{json, Ctx};
use crate::views::hydrate::{FeedItem, Reason};
use crate::views::{uri_did, Hydrator};

/// Rows `(uri, rkey, subject, cid, indexed_at, by)`: a post has no subject; a
/// repost names the post it reposts and who reposted it.
fn feed_items(rows: &[Row]) -> Vec<FeedItem> {
    rows.iter()
        .map(|row| match row.get::<_, Option<String>>(2) {
            Some(subject) => FeedItem {
                post_uri: subject,
                reason: Some(Reason::Repost {
                    by: row.get(5),
                    uri: row.get(0),
                    cid: row.get(3),
                    indexed_at: row.get(4),
                }),
            },
            None => FeedItem {
                post_uri: row.get(0),
                reason: None,
            },
        })
        .collect()
}

async fn render_feed(
    ctx: &Ctx<'_>,
    client: &crate::views::Db,
    rows: &[Row],
    limit: i64,
) -> XrpcResult<Response> {
    let items = feed_items(rows);
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .hydrate_feed(&items)
        .await?;
    let next = next_cursor(rows, limit, 1, 0);
    json(&hydrated.feed_page(&items, next))
}

/// `authors` is a query yielding a `did` column, over the statement's `$1`.
fn posts_of(authors: &str, with_reposts: bool, has_cursor: bool) -> String {
    let posts = format!(
        "SELECT x.uri, x.rkey, NULL::text, NULL::text, NULL::text, NULL::text \
         FROM authors a CROSS JOIN LATERAL ( \
           SELECT p.uri, p.rkey FROM posts p WHERE p.did = a.did {page} \
           ORDER BY p.rkey DESC LIMIT $2) x",
        page = keyset(has_cursor, "p", 3, 4)
    );
    let reposts = format!(
        "SELECT x.uri, x.rkey, x.subject_uri, x.cid, x.at, a.did \
         FROM authors a CROSS JOIN LATERAL ( \
           SELECT r.uri, r.rkey, r.subject_uri, r.cid, \
             to_char(r.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at \
           FROM reposts r WHERE {range} AND r.subject_uri IS NOT NULL {page} \
           ORDER BY r.uri DESC LIMIT $2) x",
        range = account_records(
            "r",
            "a.did",
            "app.bsky.feed.repost",
            has_cursor.then_some(3)
        ),
        page = keyset(has_cursor, "r", 3, 4)
    );
    let union = if with_reposts {
        format!("({posts}) UNION ALL ({reposts})")
    } else {
        posts
    };
    format!("WITH authors AS ({authors}) {union} ORDER BY 2 DESC, 1 DESC LIMIT $2")
}

/// Posts and reposts of the accounts the viewer follows, and the viewer's own.
pub async fn get_timeline(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.cursor()?;
    // Any algorithm name gets the reverse-chronological following timeline.
    let _ = ctx.params.get("algorithm");
    let viewer = ctx.require_viewer()?.to_owned();
    let client = ctx.db().await?;
    let sql = posts_of(
        "SELECT $1::text AS did UNION SELECT f.subject_did FROM follows f WHERE f.did = $1",
        true,
        cursor.is_some(),
    );
    let (key, after) = cursor_params(cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&viewer, &limit, &key, &after])
        .await?;
    render_feed(ctx, &client, &rows, limit).await
}

/// Posts by the list's members, leaving out members who block or are blocked
/// by the list's creator, as the reference AppView does.
pub async fn get_list_feed(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let list = ctx.params.at_uri("list")?;
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.cursor()?;
    let client = ctx.db().await?;
    let exists = client
        .query_opt(
            &client
                .prepare_cached("SELECT 1 FROM lists WHERE uri = $1")
                .await?,
            &[&list],
        )
        .await?;
    if exists.is_none() {
        return Err(XrpcError::not_found(
            "UnknownList",
            format!("list: list not found: {list}"),
        ));
    }
    let creator = uri_did(&list).unwrap_or_default().to_owned();
    let sql = posts_of(
        "SELECT DISTINCT li.subject_did AS did FROM list_items li WHERE li.list_uri = $1 \
         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE \
           (b.did = $5 AND b.subject_did = li.subject_did) OR (b.did = li.subject_did AND b.subject_did = $5))",
        false,
        cursor.is_some(),
    );
    let (key, after) = cursor_params(cursor.as_ref());
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&list, &limit, &key, &after, &creator])
        .await?;
    render_feed(ctx, &client, &rows, limit).await
}
