//! Suggestions computed from the index, for the app's explore screen and
//! its "suggested follows" cards: accounts by followers, accounts followed
//! by an actor's followers, and feed generators by likes. Each reads a
//! bounded number of rows from one index (see docs/schema.md), whatever
//! the network's size.

use std::collections::HashSet;
use std::sync::LazyLock;

use axum::response::Response;
use serde_json::{json, Value};

use crate::compact::{account_rows, did_id, followers_of};
use crate::cursor::Cursor;
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::fill::Listing;
use crate::routes::generators::generator_views;
use crate::routes::keyset::with_cursor;
use crate::routes::{json, Ctx};
use crate::views::Hydrator;

/// Cursor key: a count and the row's id, newest-first style keyset on a
/// ranking. A count that moved between pages can repeat or skip a row,
/// which suggestions tolerate.
fn ranked_cursor(ctx: &Ctx<'_>) -> XrpcResult<Option<(i64, String)>> {
    match ctx.params.cursor()? {
        None => Ok(None),
        Some(c) => {
            let count = c
                .key
                .parse::<i64>()
                .map_err(|_| XrpcError::bad_param("cursor", "not a cursor this service issued"))?;
            Ok(Some((count, c.uri)))
        }
    }
}

/// `app.bsky.actor.getSuggestions`: served accounts with the most
/// followers, leaving out the viewer, whom the viewer follows, and
/// accounts blocked either way (a page may then come back short). Reads
/// the followers index from the top.
pub async fn get_suggestions(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let limit = ctx.params.limit(1, 100, 50)?;
    let after = ranked_cursor(ctx)?;
    let (actors, cursor) = ranked_actors(ctx, limit, after).await?;
    Listing::serialize(
        &with_cursor(json!({ "actors": actors }), cursor),
        "actors",
        limit,
    )
}

/// `app.bsky.unspecced.getSuggestedUsers` (the explore screen): the first
/// page of [`get_suggestions`]. There are no categories here; `category`
/// is not read.
pub async fn get_suggested_users(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let limit = ctx.params.limit(1, 50, 25)?;
    let (actors, _) = ranked_actors(ctx, limit, None).await?;
    json(&json!({ "actors": actors }))
}

/// A page of served accounts by followers after `after`, and the cursor of
/// the next.
async fn ranked_actors(
    ctx: &Ctx<'_>,
    limit: i64,
    after: Option<(i64, String)>,
) -> XrpcResult<(Vec<Value>, Option<String>)> {
    let (count, did) = after.unwrap_or((i64::MAX, String::new()));
    let client = ctx.db().await?;
    let statement = client
        .prepare_cached(
            "SELECT a.did, a.followers FROM actors a \
             WHERE a.status = 'active' AND a.indexed \
               AND (a.followers, a.did) < ($1, CASE WHEN $2 = '' THEN chr(1114111) ELSE $2 END) \
               AND a.did IS DISTINCT FROM $3 \
               AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.did = $3 AND f.subject_did = a.did) \
             ORDER BY a.followers DESC, a.did DESC LIMIT $4",
        )
        .await?;
    let viewer = ctx.viewer();
    let rows = client
        .query(&statement, &[&count, &did, &viewer, &limit])
        .await?;
    let ranked: Vec<(String, i64)> = rows
        .iter()
        .map(|r| Ok((r.col("did")?, r.col("followers")?)))
        .collect::<XrpcResult<_>>()?;
    let dids: Vec<String> = ranked.iter().map(|(d, _)| d.clone()).collect();
    let hydrated = Hydrator::new(&client, ctx.config(), viewer)
        .hydrate(&[], &dids)
        .await?;
    let actors: Vec<Value> = dids
        .iter()
        .filter(|d| !hydrated.blocked(d))
        .filter_map(|d| hydrated.profile_view(d))
        .collect();
    Ok((actors, next_cursor(&ranked, limit)))
}

/// The cursor after a full page of `(id, count)` rows.
fn next_cursor(ranked: &[(String, i64)], limit: i64) -> Option<String> {
    if ranked.len() as i64 != limit {
        return None;
    }
    let (id, count) = ranked.last()?;
    Some(Cursor::new(count.to_string(), id.clone()).encode())
}

/// Followers of the actor looked at, and follows of each, read for
/// `getSuggestedFollowsByActor`.
const RECENT_FOLLOWERS: i64 = 100;
const FOLLOWS_EACH: i64 = 50;

/// `app.bsky.graph.getSuggestedFollowsByActor`: the accounts most followed
/// by the actor's latest followers (people who follow this account also
/// follow...), without the actor, the viewer and whom the viewer follows.
pub async fn get_suggested_follows_by_actor(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let actor = ctx.params.actor("actor")?;
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;
    let viewer = ctx.viewer();
    // The actor's followers newest first by the (subject, rkey) index; each
    // one's follows newest first by the primary key (actor, rkey).
    let sql = format!(
        "SELECT s.subject_did AS did, count(*) AS n FROM ( \
             SELECT f.did FROM follows f WHERE {fans} \
             ORDER BY f.rkey_id DESC, f.uri DESC LIMIT $3) fans \
         CROSS JOIN LATERAL ( \
             SELECT g.subject_did FROM follows g WHERE {range} \
             ORDER BY g.rkey_id DESC LIMIT $4) s \
         WHERE s.subject_did <> $1 AND s.subject_did IS DISTINCT FROM $2 \
           AND NOT EXISTS (SELECT 1 FROM follows v WHERE v.did = $2 AND v.subject_did = s.subject_did) \
         GROUP BY s.subject_did ORDER BY n DESC, s.subject_did LIMIT 20",
        fans = followers_of("f", "$1", None),
        range = account_rows("g", "fans.did", None)
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client
        .query(
            &statement,
            &[&did, &viewer, &RECENT_FOLLOWERS, &FOLLOWS_EACH],
        )
        .await?;
    let dids: Vec<String> = rows
        .iter()
        .map(|r| r.col("did"))
        .collect::<XrpcResult<_>>()?;
    let hydrated = Hydrator::new(&client, ctx.config(), viewer)
        .hydrate(&[], &dids)
        .await?;
    let suggestions: Vec<Value> = dids
        .iter()
        .filter(|d| !hydrated.blocked(d))
        .filter_map(|d| hydrated.profile_view(d))
        .take(10)
        .collect();
    json(&json!({ "suggestions": suggestions, "isFallback": false }))
}

/// `app.bsky.feed.getSuggestedFeeds` and
/// `app.bsky.unspecced.getPopularFeedGenerators`: generators by likes,
/// the latter optionally matching `query` in their name or description.
pub async fn get_popular_feed_generators(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let limit = ctx.params.limit(1, 100, 50)?;
    let after = ranked_cursor(ctx)?;
    let query = ctx
        .params
        .get("query")
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| format!("%{}%", q.replace(['%', '_', '\\'], "")));
    let (feeds, cursor) = ranked_generators(ctx, limit, after, query).await?;
    Listing::serialize(
        &with_cursor(json!({ "feeds": feeds }), cursor),
        "feeds",
        limit,
    )
}

/// `app.bsky.unspecced.getSuggestedFeeds` (the explore screen): the first
/// page of the generators by likes.
pub async fn get_unspecced_suggested_feeds(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let limit = ctx.params.limit(1, 25, 10)?;
    let (feeds, _) = ranked_generators(ctx, limit, None, None).await?;
    json(&json!({ "feeds": feeds }))
}

/// A page of generators by likes after `after`, optionally matching the
/// `ILIKE` pattern `query`, and the cursor of the next.
async fn ranked_generators(
    ctx: &Ctx<'_>,
    limit: i64,
    after: Option<(i64, String)>,
    query: Option<String>,
) -> XrpcResult<(Vec<Value>, Option<String>)> {
    let (likes, uri) = after.unwrap_or((i64::MAX, String::new()));
    let client = ctx.db().await?;
    static POPULAR: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT g.uri, COALESCE(c.likes, 0) AS likes FROM feed_generators g \
             JOIN actors a ON a.did = g.did AND a.status = 'active' AND a.indexed \
             LEFT JOIN LATERAL counts_of({actor}, 'app.bsky.feed.generator', rkey_id(g.rkey)) c ON true \
             WHERE (COALESCE(c.likes, 0), g.uri) < ($1, CASE WHEN $2 = '' THEN chr(1114111) ELSE $2 END) \
               AND ($3::text IS NULL OR g.display_name ILIKE $3 OR g.description ILIKE $3) \
             ORDER BY 2 DESC, g.uri DESC LIMIT $4",
            actor = did_id("g.did"),
        )
    });
    let statement = client.prepare_cached(&POPULAR).await?;
    let rows = client
        .query(&statement, &[&likes, &uri, &query, &limit])
        .await?;
    let ranked: Vec<(String, i64)> = rows
        .iter()
        .map(|r| Ok((r.col("uri")?, r.col("likes")?)))
        .collect::<XrpcResult<_>>()?;
    let uris: Vec<String> = ranked.iter().map(|(u, _)| u.clone()).collect();
    let feeds = generator_views(ctx, &client, &uris).await?;
    Ok((feeds, next_cursor(&ranked, limit)))
}

/// Newest posts whose hashtags make the trends; read backwards along the
/// posts' record-key index, so the cost does not grow with the network.
const TREND_WINDOW: i64 = 5000;

/// `app.bsky.unspecced.getTrendingTopics` and `getTrends`: the hashtags the
/// most accounts used in the newest posts.
async fn trending(ctx: &Ctx<'_>, limit: i64) -> XrpcResult<Vec<Trend>> {
    let client = ctx.db().await?;
    let statement = client
        .prepare_cached(
            "SELECT lower(t.tag) AS tag, count(*) AS posts, count(DISTINCT p.did) AS authors, \
                    min(p.indexed_at) AS started, (array_agg(DISTINCT p.did))[1:5] AS actors \
             FROM (SELECT uri, did, record, indexed_at FROM posts ORDER BY rkey DESC, uri DESC LIMIT $1) p \
             CROSS JOIN LATERAL ( \
                 SELECT DISTINCT f #>> '{}' AS tag FROM jsonb_path_query(p.record::jsonb, \
                     '$.facets[*].features[*] ? (@.\"$type\" == \"app.bsky.richtext.facet#tag\").tag') f) t \
             WHERE strpos(p.record::text, 'facet#tag') > 0 AND length(t.tag) BETWEEN 1 AND 64 \
             GROUP BY lower(t.tag) HAVING count(DISTINCT p.did) >= 2 \
             ORDER BY authors DESC, posts DESC, tag LIMIT $2",
        )
        .await?;
    let rows = client.query(&statement, &[&TREND_WINDOW, &limit]).await?;
    let trends: Vec<Trend> = rows
        .iter()
        .map(|r| {
            Ok(Trend {
                tag: r.col("tag")?,
                posts: r.col("posts")?,
                started: crate::views::datetime_millis(r.col("started")?),
                actors: r.col("actors")?,
            })
        })
        .collect::<XrpcResult<_>>()?;
    Ok(trends)
}

struct Trend {
    tag: String,
    posts: i64,
    started: String,
    actors: Vec<String>,
}

fn link(tag: &str) -> String {
    format!(
        "/hashtag/{}",
        form_urlencoded::byte_serialize(tag.as_bytes()).collect::<String>()
    )
}

pub async fn get_trending_topics(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let limit = ctx.params.limit(1, 25, 10)?;
    let topics: Vec<Value> = trending(ctx, limit)
        .await?
        .iter()
        .map(
            |t| json!({"topic": t.tag, "displayName": format!("#{}", t.tag), "link": link(&t.tag)}),
        )
        .collect();
    json(&json!({ "topics": topics, "suggested": [] }))
}

pub async fn get_trends(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let limit = ctx.params.limit(1, 25, 10)?;
    let trends = trending(ctx, limit).await?;
    let dids: Vec<String> = trends
        .iter()
        .flat_map(|t| t.actors.iter().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let client = ctx.db().await?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let views: Vec<Value> = trends
        .iter()
        .map(|t| {
            let actors: Vec<Value> = t
                .actors
                .iter()
                .filter(|d| !hydrated.blocked(d))
                .filter_map(|d| hydrated.profile_basic(d))
                .collect();
            json!({
                "topic": t.tag,
                "displayName": format!("#{}", t.tag),
                "link": link(&t.tag),
                "startedAt": t.started,
                "postCount": t.posts,
                "actors": actors,
            })
        })
        .collect();
    json(&json!({ "trends": views }))
}
