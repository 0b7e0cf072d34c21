//! app.bsky.feed.*: the viewer's following timeline and list feeds — posts
//! (and for the timeline, reposts) of a set of accounts, newest first.
//!
//! Each account contributes at most one page of its newest rows (a
//! backward index scan each: posts by `(did, rkey DESC)`, reposts by their
//! `(actor, rkey)` key), and the page is the newest of those, so the work
//! grows with the number of accounts, not with their post counts.

use axum::response::Response;

use crate::compact::{account_rows, has_subject};
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::keyset::{Keyset, Page};
use crate::routes::{json, Ctx};
use crate::views::hydrate::{FeedItem, Reason};
use crate::views::{uri_did, Hydrator};

/// Rows `(uri, rkey, subject, cid, indexed_at, by)`: a post has no subject; a
/// repost names the post it reposts and who reposted it.
fn feed_items(page: &Page) -> XrpcResult<Vec<FeedItem>> {
    page.rows
        .iter()
        .map(|row| {
            Ok(match row.col::<Option<String>>("subject")? {
                Some(subject) => FeedItem {
                    post_uri: subject,
                    reason: Some(Reason::Repost {
                        by: row.col("by")?,
                        uri: row.col("uri")?,
                        cid: row.col("cid")?,
                        indexed_at: row.col("at")?,
                    }),
                },
                None => FeedItem {
                    post_uri: row.col("uri")?,
                    reason: None,
                },
            })
        })
        .collect()
}

/// `drop_muted`: leave out what the viewer's mutes hide (the timeline).
/// What the viewer's blocks hide is left out of both feeds.
async fn render_feed(
    ctx: &Ctx<'_>,
    client: &crate::views::Db,
    page: &Page,
    drop_muted: bool,
) -> XrpcResult<Response> {
    let mut items = feed_items(page)?;
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .hydrate_feed(&items)
        .await?;
    items.retain(|item| {
        let muted = drop_muted && hydrated.feed_item_muted(item);
        !muted && !hydrated.feed_item_blocked(item)
    });
    json(&hydrated.feed_page(&items, page.next()?))
}

/// `authors` is a query yielding a `did` column over the statement's `own`
/// parameters.
fn posts_of(authors: &str, with_reposts: bool, page: &Keyset, own: usize) -> String {
    let limit = Keyset::limit_param(own);
    let posts = format!(
        "SELECT x.uri, x.rkey, NULL::text AS subject, NULL::text AS cid, NULL::text AS at, \
                NULL::text AS by \
         FROM authors a CROSS JOIN LATERAL ( \
           SELECT p.uri, p.rkey FROM posts p WHERE p.did = a.did {after} \
           ORDER BY p.rkey DESC LIMIT {limit}) x",
        after = page.after("p", own)
    );
    let reposts = format!(
        "SELECT x.uri, x.rkey, x.subject_uri, x.cid, x.at, a.did \
         FROM authors a CROSS JOIN LATERAL ( \
           SELECT r.uri, r.rkey, r.subject_uri, r.cid, \
             to_char(r.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at \
           FROM reposts r WHERE {range} AND {has_subject} {after} \
           ORDER BY r.rkey_id DESC LIMIT {limit}) x",
        range = account_rows("r", "a.did", page.key_param(own)),
        has_subject = has_subject("r"),
        after = page.after("r", own)
    );
    let union = if with_reposts {
        format!("({posts}) UNION ALL ({reposts})")
    } else {
        posts
    };
    format!("WITH authors AS ({authors}) {union} ORDER BY 2 DESC, 1 DESC LIMIT {limit}")
}

/// Posts and reposts of the accounts the viewer follows, and the viewer's
/// own, less what the viewer's mutes hide. Fully muted accounts are left
/// out of the page's authors, so their rows do not take a page's room.
pub async fn get_timeline(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let page = Keyset::parse(ctx)?;
    // Any algorithm name gets the reverse-chronological following timeline.
    let _ = ctx.params.get("algorithm");
    let viewer = ctx.require_viewer()?.to_owned();
    let client = ctx.db().await?;
    let sql = posts_of(
        "SELECT $1::text AS did UNION SELECT f.subject_did FROM follows f WHERE f.did = $1 \
         AND NOT EXISTS (SELECT 1 FROM private_actor_mutes m WHERE m.did = $1 \
           AND m.subject_did = f.subject_did AND NOT m.only_reposts AND NOT m.only_quoteposts)",
        true,
        &page,
        1,
    );
    let rows = page.fetch(&client, &sql, &[&viewer]).await?;
    render_feed(ctx, &client, &rows, true).await
}

/// Posts by the list's members, leaving out members who block or are blocked
/// by the list's creator, as the reference AppView does.
pub async fn get_list_feed(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let list = ctx.params.at_uri("list")?;
    let page = Keyset::parse(ctx)?;
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
           (b.did = $2 AND b.subject_did = li.subject_did) OR (b.did = li.subject_did AND b.subject_did = $2))",
        false,
        &page,
        2,
    );
    let rows = page.fetch(&client, &sql, &[&list, &creator]).await?;
    render_feed(ctx, &client, &rows, false).await
}
