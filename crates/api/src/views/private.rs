//! Private state in views: what the viewer muted, bookmarked and subscribed
//! to, and how many accounts bookmarked each post. The tables are the API's own
//! (migration 0019, written by the private-state procedures); a response
//! reads them with one query for its actors and one for its posts.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use serde_json::json;

use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::Db;

/// The viewer's private state about one actor: mutes and activity
/// subscription.
#[derive(Debug, Clone, Default)]
pub struct ActorPrivate {
    /// Muted directly, fully (not only reposts or quote posts).
    pub muted: bool,
    pub only_reposts: bool,
    pub only_quoteposts: bool,
    /// A list the viewer mutes that holds the actor.
    pub by_list: Option<String>,
    /// `app.bsky.notification.defs#activitySubscription`, when the viewer
    /// subscribed to the actor's posts or replies.
    pub activity_subscription: Option<serde_json::Value>,
}

impl ActorPrivate {
    /// Muted fully, directly or by a list: the actor's content is left out
    /// of timelines and notifications.
    pub fn fully(&self) -> bool {
        self.muted || self.by_list.is_some()
    }
}

const ACTOR_PRIVATE_QUERY: &str = "\
SELECT d.did, m.only_reposts, m.only_quoteposts, m.subject_did IS NOT NULL AS muted, \
  (SELECT lm.list_uri FROM private_list_mutes lm JOIN list_items li ON li.list_uri = lm.list_uri \
     WHERE lm.did = $2 AND li.subject_did = d.did ORDER BY lm.list_uri LIMIT 1) AS by_list, \
  s.post AS subscribed_posts, s.reply AS subscribed_replies \
FROM unnest($1::text[]) AS d(did) \
LEFT JOIN private_actor_mutes m ON m.did = $2 AND m.subject_did = d.did \
LEFT JOIN private_activity_subscriptions s ON s.did = $2 AND s.subject_did = d.did";

/// The viewer's private state about `dids`, in one query; actors the viewer
/// neither muted nor subscribed to are absent.
pub async fn load_actor_private(
    client: &Db,
    viewer: &str,
    dids: &[String],
) -> XrpcResult<HashMap<String, ActorPrivate>> {
    if dids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(ACTOR_PRIVATE_QUERY).await?,
            &[&dids, &viewer],
        )
        .await?;
    let mut states = HashMap::new();
    for row in &rows {
        let subscription = match (
            row.col::<Option<bool>>("subscribed_posts")?,
            row.col::<Option<bool>>("subscribed_replies")?,
        ) {
            (Some(post), Some(reply)) => Some(json!({"post": post, "reply": reply})),
            _ => None,
        };
        let by_list: Option<String> = row.col("by_list")?;
        if !row.col::<bool>("muted")? && by_list.is_none() && subscription.is_none() {
            continue;
        }
        let only_reposts = row.col::<Option<bool>>("only_reposts")?.unwrap_or(false);
        let only_quoteposts = row.col::<Option<bool>>("only_quoteposts")?.unwrap_or(false);
        let state = ActorPrivate {
            // A scoped mute is not a full one.
            muted: row.col::<bool>("muted")? && !only_reposts && !only_quoteposts,
            only_reposts,
            only_quoteposts,
            by_list,
            activity_subscription: subscription,
        };
        states.insert(row.col("did")?, state);
    }
    Ok(states)
}

/// Private state of one post.
#[derive(Debug, Clone, Default)]
pub struct PostPrivate {
    /// Accounts that bookmarked it.
    pub bookmarks: i64,
    /// Whether the viewer bookmarked it.
    pub bookmarked: bool,
    /// Whether the viewer muted its thread.
    pub thread_muted: bool,
}

const POST_PRIVATE_QUERY: &str = "\
SELECT u.uri, \
  (SELECT count(*) FROM private_bookmarks b WHERE b.subject_uri = u.uri) AS bookmarks, \
  EXISTS (SELECT 1 FROM private_bookmarks b WHERE b.did = $3 AND b.subject_uri = u.uri) AS bookmarked, \
  EXISTS (SELECT 1 FROM private_thread_mutes t WHERE t.did = $3 AND t.root_uri = u.root) AS thread_muted \
FROM unnest($1::text[], $2::text[]) AS u(uri, root)";

/// Bookmark counts of `posts` (`(uri, thread root)` pairs) and, with a
/// viewer, the viewer's bookmarks and thread mutes of them: one query.
/// Posts nobody bookmarked and the viewer did not mute are absent.
pub async fn load_post_private(
    client: &Db,
    viewer: Option<&str>,
    posts: &[(String, String)],
) -> XrpcResult<HashMap<String, PostPrivate>> {
    if posts.is_empty() {
        return Ok(HashMap::new());
    }
    let (uris, roots): (Vec<&str>, Vec<&str>) = posts
        .iter()
        .map(|(uri, root)| (uri.as_str(), root.as_str()))
        .unzip();
    let rows = client
        .query(
            &client.prepare_cached(POST_PRIVATE_QUERY).await?,
            &[&uris, &roots, &viewer],
        )
        .await?;
    let mut state = HashMap::new();
    for row in &rows {
        let post = PostPrivate {
            bookmarks: row.col("bookmarks")?,
            bookmarked: row.col("bookmarked")?,
            thread_muted: row.col("thread_muted")?,
        };
        if post.bookmarks > 0 || post.thread_muted {
            state.insert(row.col("uri")?, post);
        }
    }
    Ok(state)
}

/// Which of `uris` (posts) are in a thread the viewer muted, in one query.
pub async fn in_muted_threads(
    client: &Db,
    viewer: &str,
    uris: &[String],
) -> XrpcResult<HashSet<String>> {
    if uris.is_empty() {
        return Ok(HashSet::new());
    }
    let stmt = client
        .prepare_cached(
            "SELECT u.uri FROM unnest($2::text[]) AS u(uri) JOIN posts p ON p.uri = u.uri \
             WHERE EXISTS (SELECT 1 FROM private_thread_mutes t \
                 WHERE t.did = $1 AND t.root_uri = COALESCE(p.reply_root_uri, p.uri))",
        )
        .await?;
    client
        .query(&stmt, &[&viewer, &uris])
        .await?
        .iter()
        .map(|row| row.col("uri"))
        .collect()
}

/// When the viewer last marked their notifications seen (`updateSeen`).
pub async fn notifications_seen(client: &Db, viewer: &str) -> XrpcResult<Option<SystemTime>> {
    let stmt = client
        .prepare_cached("SELECT seen_at FROM private_notification_seen WHERE did = $1")
        .await?;
    client
        .query_opt(&stmt, &[&viewer])
        .await?
        .map(|row| row.col("seen_at"))
        .transpose()
}
