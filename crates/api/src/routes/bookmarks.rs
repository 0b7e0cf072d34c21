//! app.bsky.bookmark.*: the viewer's bookmarks of posts, private state
//! (migration 0019). Creating a bookmark that exists and deleting one that
//! does not both succeed.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::json;

use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::fill::Listing;
use crate::routes::input::{done, write, Input};
use crate::routes::keyset::Keyset;
use crate::routes::mutes::newest_written;
use crate::routes::Ctx;
use crate::views::feed_view::PostOrPlaceholder;
use crate::views::Hydrator;

/// Only posts can be bookmarked, as the lexicon says.
fn post_uri(input: &Input) -> XrpcResult<String> {
    let uri = input.at_uri("uri")?;
    let collection = skyhose_proto::syntax::parse_at_uri(&uri).and_then(|u| u.collection);
    if collection != Some("app.bsky.feed.post") {
        metrics::counter!(crate::routes::input::BAD_INPUT, "reason" => "unsupported_collection")
            .increment(1);
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedCollection",
            format!("uri: {uri} is not a post; only app.bsky.feed.post records can be bookmarked"),
        ));
    }
    Ok(uri)
}

pub async fn create_bookmark(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let uri = post_uri(input)?;
    let cid = input.cid("cid")?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "INSERT INTO private_bookmarks (did, subject_uri, subject_cid) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
        &[&viewer, &uri, &cid],
    )
    .await?;
    done()
}

pub async fn delete_bookmark(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let uri = post_uri(input)?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "DELETE FROM private_bookmarks WHERE did = $1 AND subject_uri = $2",
        &[&viewer, &uri],
    )
    .await?;
    done()
}

/// `app.bsky.bookmark.defs#bookmarkView`.
#[derive(Serialize)]
struct BookmarkView<'a> {
    subject: serde_json::Value,
    #[serde(rename = "createdAt")]
    created_at: String,
    item: PostOrPlaceholder<'a>,
}

/// The viewer's bookmarks, newest first, each with the post or the
/// placeholder saying why it is not shown (blocks and mutes do not hide
/// bookmarks, as the reference AppView does).
pub async fn get_bookmarks(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let page = Keyset::parse(ctx)?;
    let viewer = ctx.require_viewer()?;
    let client = ctx.db().await?;
    let sql = newest_written(
        "subject_uri AS uri, subject_cid AS cid, \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created",
        "FROM private_bookmarks WHERE did = $1",
        &page,
    );
    let rows = page.fetch(&client, &sql, &[&viewer]).await?;
    let uris = rows.column("uri")?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&uris, &[])
        .await?;
    let bookmarks = rows
        .rows
        .iter()
        .map(|row| {
            let uri: String = row.col("uri")?;
            let cid: String = row.col("cid")?;
            Ok(BookmarkView {
                item: hydrated.post_or_placeholder(&uri),
                subject: json!({"uri": uri, "cid": cid}),
                created_at: row.col("created")?,
            })
        })
        .collect::<XrpcResult<Vec<_>>>()?;
    #[derive(Serialize)]
    struct Output<'a> {
        bookmarks: Vec<BookmarkView<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    }
    Listing::serialize(
        &Output {
            bookmarks,
            cursor: rows.next()?,
        },
        "bookmarks",
        page.limit,
    )
}
