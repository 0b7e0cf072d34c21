//! app.bsky.feed.*: posts, author feeds and threads.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::compact::{account_rows, did_id, shown_repost, subject_is, LIVE_REPOST_KEYS};
use crate::cursor::Cursor;
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::params::ActorRef;
use crate::routes::actor::{check_status, served_actor};
use crate::routes::fill::Listing;
use crate::routes::keyset::Keyset;
use crate::routes::{json, Ctx};
use crate::views::feed_view::PostsPage;
use crate::views::hydrate::{not_found_post, FeedItem, Reason};
use crate::views::post::{PostInfo, POST_COLUMNS};
use crate::views::{Db, Hydrated, Hydrator};

pub async fn get_posts(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let uris = ctx.params.at_uris("uris", 25)?;
    let client = ctx.db().await?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&uris, &[])
        .await?;
    // As the official AppView: a post whose author and the viewer block
    // each other is left out rather than shown as blocked.
    let posts = uris
        .iter()
        .filter(|u| {
            hydrated
                .posts
                .get(*u)
                .is_none_or(|p| !hydrated.blocked(&p.did))
        })
        .filter_map(|u| hydrated.post_view_raw(u))
        .collect();
    json(&PostsPage {
        posts,
        cursor: None,
    })
}

/// The columns of an author feed's page row besides its own: a post row
/// carries what [`POST_COLUMNS`] reads (a repost row has NULLs), so that
/// the author's posts are not looked up again by URI.
const PAGE_POST: &str = "p.did, p.cid AS post_cid, p.record, p.indexed_at, \
    p.reply_root_uri, p.reply_parent_uri, p.embed_record_uri, p.violates_threadgate, \
    p.actor, p.rkey_id";
const PAGE_REPOST: &str = "NULL::text, NULL::text, NULL::json, NULL::timestamptz, \
    NULL::text, NULL::text, NULL::text, NULL::bool, NULL::int4, NULL::int8";
/// [`POST_COLUMNS`] of a page row that is a post.
const PAGE_POST_COLUMNS: &str = "p.uri, p.did, p.rkey, p.post_cid AS cid, p.record, p.indexed_at, \
    p.reply_root_uri, p.reply_parent_uri, p.embed_record_uri, p.violates_threadgate, \
    p.actor, p.rkey_id";

const AUTHOR_FEED_FILTERS: &[&str] = &[
    "posts_with_replies",
    "posts_no_replies",
    "posts_with_media",
    "posts_and_author_threads",
    "posts_with_video",
];

pub async fn get_author_feed(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let actor = ctx.params.actor("actor")?;
    let page = Keyset::parse(ctx)?;
    let filter = ctx
        .params
        .known_value("filter", AUTHOR_FEED_FILTERS, "posts_with_replies");
    let include_pins = ctx.params.bool("includePins", false)?;
    let client = ctx.db().await?;
    // A DID is checked against the actor row the page's statement returns;
    // a handle needs resolving first.
    let did = match &actor {
        ActorRef::Did(did) => did.clone(),
        ActorRef::Handle(_) => served_actor(&client, "actor", &actor).await?,
    };

    let post_filter = match filter {
        "posts_no_replies" => "AND p.reply_parent_uri IS NULL",
        "posts_with_media" => "AND (p.embed_images IS NOT NULL OR p.embed_video_cid IS NOT NULL)",
        "posts_with_video" => "AND p.embed_video_cid IS NOT NULL",
        "posts_and_author_threads" => {
            "AND (p.reply_parent_uri IS NULL OR p.reply_root_uri LIKE 'at://' || p.did || '/%')"
        }
        _ => "",
    };
    let with_reposts = matches!(
        filter,
        "posts_with_replies" | "posts_no_replies" | "posts_and_author_threads"
    );
    // One author's rkeys are unique per collection, so each branch reads at
    // most a page in (rkey, uri) order from one index: posts by their
    // (did, rkey) index, reposts backwards along their (actor, rkey) key.
    // A repost row is chosen by its stored key (`repost_actor`,
    // `repost_key`); what it shows is read for the page's reposts only.
    let posts_sql = format!(
        "SELECT p.uri, p.rkey, {PAGE_POST}, NULL::int4 AS repost_actor, NULL::int8 AS repost_key \
         FROM posts p WHERE p.did = $1 {post_filter} {page_p} \
         ORDER BY p.rkey DESC LIMIT $2",
        page_p = page.after("p", 1)
    );
    let page_sql = if with_reposts {
        format!(
            "({posts_sql}) UNION ALL \
             (SELECT r.uri, r.rkey, {PAGE_REPOST}, r.actor, r.rkey_id \
              FROM (SELECT k.*, 'at://' || $1 || '/app.bsky.feed.repost/' || k.rkey AS uri \
                    FROM {LIVE_REPOST_KEYS} k) r \
              WHERE {range_r} AND r.has_subject {page_r} \
              ORDER BY r.rkey_id DESC LIMIT $2) \
             ORDER BY 2 DESC, 1 DESC LIMIT $2",
            range_r = account_rows("r", "$1", page.key_param(1)),
            page_r = page.after("r", 1)
        )
    } else {
        posts_sql
    };
    // The page and the posts it shows (with `$5` the pinned one) in one
    // statement: the posts are found from the page's rows rather than from a
    // list sent back after a round trip, and only reposted (or pinned) posts
    // need looking up.
    let shown = shown_repost("x.repost_actor", "x.repost_key");
    let ctes = format!(
        "page AS MATERIALIZED ( \
            SELECT x.*, rp.subject_uri AS subject, rp.stored_cid AS cid, \
                   rp.record AS repost_record, rp.indexed_at AS at, \
                   row_number() OVER (ORDER BY x.rkey DESC, x.uri DESC) AS n \
            FROM ({page_sql}) x \
            LEFT JOIN LATERAL {shown} rp ON true \
         ), listed AS MATERIALIZED ( \
            SELECT {PAGE_POST_COLUMNS} FROM page p WHERE p.subject IS NULL \
            UNION ALL \
            SELECT {POST_COLUMNS} FROM ( \
                SELECT subject FROM page WHERE subject IS NOT NULL \
                UNION SELECT $5::text WHERE $5::text IS NOT NULL \
                EXCEPT SELECT uri FROM page WHERE subject IS NULL \
            ) s JOIN posts p ON p.uri = s.subject \
         )"
    );
    let (key, uri) = page.cursor_params();

    let mut pinned_uri: Option<String> = None;
    if include_pins && page.cursor.is_none() {
        let pinned = client
            .prepare_cached(
                "SELECT pinned_post_uri FROM actors WHERE did = $1 AND pinned_post_uri IS NOT NULL",
            )
            .await?;
        let pinned = client.query_opt(&pinned, &[&did]).await?;
        pinned_uri = match pinned {
            Some(row) => row.col::<Option<String>>("pinned_post_uri")?,
            None => None,
        }
        .filter(|uri| uri.starts_with(&format!("at://{did}/")));
    }
    let hydrator = Hydrator::new(&client, ctx.config(), ctx.viewer());
    let (rows, loaded) = hydrator
        .load_page(&ctes, &[&did, &page.limit, &key, &uri, &pinned_uri])
        .await?;
    let status = loaded.actors.get(&did).map(|a| a.status.as_str());
    let did = check_status("actor", did, status.unwrap_or_default())?;

    let mut items = Vec::with_capacity(rows.len() + 1);
    if let Some(uri) = pinned_uri {
        items.push(FeedItem {
            post_uri: uri,
            reason: Some(Reason::Pin),
        });
    }
    let next = (rows.len() as i64 == page.limit)
        .then(|| rows.last())
        .flatten()
        .map(|row| Cursor::new(row.rkey.clone(), row.uri.clone()).encode());
    for row in rows {
        items.push(match row.subject {
            Some(subject) => FeedItem {
                post_uri: subject,
                reason: Some(Reason::Repost {
                    by: did.clone(),
                    uri: row.uri,
                    cid: row.cid.unwrap_or_default(),
                    indexed_at: row.indexed_at.unwrap_or_default(),
                }),
            },
            None => FeedItem {
                post_uri: row.uri,
                reason: None,
            },
        });
    }

    let hydrated = hydrator
        .complete(loaded, std::slice::from_ref(&did))
        .await?;
    if let Some(relation) = hydrated.actor_viewer.get(&did) {
        if relation.blocking.is_some() || relation.blocking_by_list.is_some() {
            return Err(XrpcError::blocked_actor(&did));
        }
        if relation.blocked_by {
            return Err(XrpcError::blocked_by_actor(&did));
        }
    }
    if filter == "posts_and_author_threads" {
        let threads = SelfThreads::new(&items, &hydrated.posts);
        let shown: Vec<bool> = items
            .iter()
            .map(|item| item.reason.is_some() || threads.holds(&item.post_uri))
            .collect();
        let mut shown = shown.into_iter();
        items.retain(|_| shown.next().unwrap_or(true));
    }
    Listing::serialize(&hydrated.feed_page(&items, next), "feed", page.limit)
}

/// The posts of an author feed page that are in a self-thread, as the
/// official AppView shows `posts_and_author_threads`: a reply only with
/// every post up to its thread's root on the same page (reposts and the
/// pinned post are shown whatever they are).
struct SelfThreads<'h> {
    /// The page's own posts (not its reposts).
    page: HashSet<&'h str>,
    posts: &'h HashMap<String, PostInfo>,
}

impl<'h> SelfThreads<'h> {
    fn new(items: &'h [FeedItem], posts: &'h HashMap<String, PostInfo>) -> Self {
        let page = items
            .iter()
            .filter(|item| !matches!(item.reason, Some(Reason::Repost { .. })))
            .map(|item| item.post_uri.as_str())
            .collect();
        SelfThreads { page, posts }
    }

    /// `uri` and each of its ancestors are on the page and loaded, up to a
    /// post that replies to nothing.
    fn holds(&self, uri: &str) -> bool {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut at = uri;
        loop {
            // A reply chain that loops back is no thread.
            if !seen.insert(at) || !self.page.contains(at) {
                return false;
            }
            match self.posts.get(at) {
                None => return false,
                Some(post) => match post.reply_parent_uri.as_deref() {
                    None => return true,
                    Some(parent) => at = parent,
                },
            }
        }
    }
}

/// Replies loaded below the anchor, whatever `depth` asks for.
const MAX_THREAD_REPLIES: i64 = 1000;

/// A thread around an anchor as loaded for the thread methods: the anchor
/// and its ancestors, the replies below it by parent, all hydrated in one
/// batch. The one way both thread shapes (nested and flat) read a thread.
pub struct LoadedThread<'a> {
    pub hydrated: Hydrated<'a>,
    /// The anchor and its ancestors, nearest first, each with its parent's
    /// URI; the last one's parent, if any, was not loaded.
    pub ancestors: Vec<(String, Option<String>)>,
    /// Reply URIs by parent URI, in load order.
    pub children: HashMap<String, Vec<String>>,
    /// The root author's likes of the loaded posts: post URI → like URI.
    pub root_author_likes: HashMap<String, String>,
}

impl LoadedThread<'_> {
    /// The root's threadgate as `app.bsky.feed.defs#threadgateView`.
    pub fn threadgate_view(&self, root_uri: &str) -> Option<Value> {
        let tg = self.hydrated.posts.get(root_uri)?.threadgate.as_ref()?;
        Some(json!({"uri": tg.uri, "cid": tg.cid, "record": tg.record, "lists": []}))
    }

    /// Replies the root's threadgate hides.
    pub fn hidden_replies(&self, root_uri: &str) -> HashSet<String> {
        self.hydrated
            .posts
            .get(root_uri)
            .and_then(|root| root.threadgate.as_ref())
            .map(|tg| tg.hidden_replies.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Loads `uri`, up to `parent_height` ancestors and `depth` levels of
/// replies (at most [`MAX_THREAD_REPLIES`]), and the accounts `dids` besides
/// the posts' authors; None when the anchor is not indexed.
pub async fn load_thread<'a>(
    ctx: &'a Ctx<'_>,
    client: &'a Db,
    uri: &str,
    parent_height: i64,
    depth: i64,
    dids: &[String],
) -> XrpcResult<Option<LoadedThread<'a>>> {
    // The anchor and its ancestors, nearest first; `parent` of the last row
    // names the first missing ancestor, if any.
    let up = client
        .prepare_cached(
            "WITH RECURSIVE up(uri, parent, n) AS ( \
               SELECT p.uri, p.reply_parent_uri, 0 FROM posts p WHERE p.uri = $1 \
               UNION ALL \
               SELECT p.uri, p.reply_parent_uri, up.n + 1 FROM up JOIN posts p ON p.uri = up.parent \
               WHERE up.n < $2) \
             SELECT uri, parent FROM up ORDER BY n",
        )
        .await?;
    let ancestors = client
        .query(&up, &[&uri, &(parent_height as i32)])
        .await?
        .iter()
        .map(|r| Ok((r.col("uri")?, r.col("parent")?)))
        .collect::<XrpcResult<Vec<(String, Option<String>)>>>()?;
    if ancestors.is_empty() {
        return Ok(None);
    }
    let descendants = if depth > 0 {
        let down = client
            .prepare_cached(
                "WITH RECURSIVE down(uri, parent, d) AS ( \
                   SELECT p.uri, p.reply_parent_uri, 1 FROM posts p WHERE p.reply_parent_uri = $1 \
                   UNION ALL \
                   SELECT p.uri, p.reply_parent_uri, down.d + 1 FROM down \
                   JOIN posts p ON p.reply_parent_uri = down.uri WHERE down.d < $2) \
                 SELECT uri, parent FROM down ORDER BY d, uri LIMIT $3",
            )
            .await?;
        client
            .query(&down, &[&uri, &(depth as i32), &MAX_THREAD_REPLIES])
            .await?
    } else {
        Vec::new()
    };

    let mut uris: Vec<String> = ancestors.iter().map(|(uri, _)| uri.clone()).collect();
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for row in &descendants {
        let child: String = row.col("uri")?;
        let parent: String = row.col("parent")?;
        uris.push(child.clone());
        children.entry(parent).or_default().push(child);
    }
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .hydrate(&uris, dids)
        .await?;
    let root_author = hydrated
        .posts
        .get(uri)
        .map(|anchor| anchor.reply_root_uri.as_deref().unwrap_or(uri))
        .and_then(crate::views::uri_did);
    let root_author_likes = match root_author {
        Some(did) => {
            static LIKES_OF: LazyLock<String> = LazyLock::new(|| {
                format!(
                    "SELECT u.uri AS subject_uri, l.uri FROM unnest($1::text[]) AS u(uri) \
                     JOIN likes l ON l.actor = {author} AND {subject}",
                    author = did_id("$2"),
                    subject = subject_is("l", "u.uri")
                )
            });
            let stmt = client.prepare_cached(&LIKES_OF).await?;
            client
                .query(&stmt, &[&uris, &did])
                .await?
                .iter()
                .map(|r| Ok((r.col("subject_uri")?, r.col("uri")?)))
                .collect::<XrpcResult<HashMap<String, String>>>()?
        }
        None => HashMap::new(),
    };
    Ok(Some(LoadedThread {
        hydrated,
        ancestors,
        children,
        root_author_likes,
    }))
}

/// `threadContext` of a thread node: whether the root's author liked it.
fn thread_context(likes: &HashMap<String, String>, uri: &str) -> Value {
    match likes.get(uri) {
        Some(like) => json!({ "rootAuthorLike": like }),
        None => json!({}),
    }
}

pub async fn get_post_thread(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let uri = ctx.params.at_uri("uri")?;
    let depth = ctx.params.int("depth", 0, 1000, 6)?;
    let parent_height = ctx.params.int("parentHeight", 0, 1000, 80)?;
    let client = ctx.db().await?;
    let not_found = || XrpcError::not_found("NotFound", format!("uri: post not found: {uri}"));
    let thread = load_thread(ctx, &client, &uri, parent_height, depth, &[])
        .await?
        .ok_or_else(not_found)?;
    let hydrated = &thread.hydrated;

    let anchor = hydrated.posts.get(&uri);
    let Some(anchor) = anchor.filter(|_| hydrated.post(&uri).is_some()) else {
        return Err(not_found());
    };
    let root_uri = anchor.reply_root_uri.clone().unwrap_or_else(|| uri.clone());
    let hidden = thread.hidden_replies(&root_uri);

    // A reply its thread's gate disallows is shown alone: without the
    // thread it was not let into, and without replies.
    let gated_out = anchor.violates_threadgate;
    let node = if hydrated.blocked(&anchor.did) {
        hydrated.blocked_post(&uri, &anchor.did)
    } else {
        let shown_depth = if gated_out { 0 } else { depth };
        let mut node = thread_node(&thread, &uri, &root_uri, &hidden, shown_depth)
            .unwrap_or_else(|| not_found_post(&uri));
        if let Some(parent) = parent_chain(&thread, &root_uri, parent_height).filter(|_| !gated_out)
        {
            node["parent"] = parent;
        }
        node
    };
    let mut out = json!({ "thread": node });
    if let Some(tg) = thread.threadgate_view(&root_uri) {
        out["threadgate"] = tg;
    }
    json(&out)
}

/// The anchor's parent as a nested chain of thread nodes, from the ancestor
/// rows (index 0 is the anchor itself), at most `height` of them: as the
/// official AppView, the chain ends at that height rather than with a
/// placeholder for the ancestor above it, and before a parent whose root is
/// not the anchor's `root_uri` (its record names another thread).
fn parent_chain(thread: &LoadedThread<'_>, root_uri: &str, height: i64) -> Option<Value> {
    let (h, ancestors) = (&thread.hydrated, &thread.ancestors);
    let anchor_parent = ancestors.first()?.1.clone()?;
    let loaded: HashMap<&str, &Option<String>> = ancestors
        .iter()
        .map(|(uri, parent)| (uri.as_str(), parent))
        .collect();
    // Walk up, then fold back down so each node carries its own parent.
    let mut chain: Vec<Value> = Vec::new();
    let mut next = Some(anchor_parent).filter(|_| height > 0);
    while let Some(uri) = next.take() {
        let Some(p) = h
            .posts
            .get(&uri)
            .filter(|_| loaded.contains_key(uri.as_str()))
        else {
            chain.push(not_found_post(&uri));
            break;
        };
        if !p.in_thread(root_uri) {
            break;
        }
        if h.blocked(&p.did) {
            chain.push(h.blocked_post(&uri, &p.did));
            break;
        }
        match h.post_view(&uri) {
            Some(view) => {
                let mut node = Map::new();
                node.insert("$type".into(), json!("app.bsky.feed.defs#threadViewPost"));
                node.insert("post".into(), view);
                node.insert(
                    "threadContext".into(),
                    thread_context(&thread.root_author_likes, &uri),
                );
                chain.push(Value::Object(node));
                next = loaded
                    .get(uri.as_str())
                    .and_then(|p| (*p).clone())
                    .filter(|_| (chain.len() as i64) < height);
            }
            None => {
                chain.push(not_found_post(&uri));
                break;
            }
        }
    }
    let mut parent: Option<Value> = None;
    for mut node in chain.into_iter().rev() {
        if let Some(p) = parent.take() {
            node["parent"] = p;
        }
        parent = Some(node);
    }
    parent
}

fn thread_node(
    thread: &LoadedThread<'_>,
    uri: &str,
    root_uri: &str,
    hidden: &HashSet<String>,
    depth: i64,
) -> Option<Value> {
    let h = &thread.hydrated;
    let view = h.post_view(uri)?;
    let mut node = Map::new();
    node.insert("$type".into(), json!("app.bsky.feed.defs#threadViewPost"));
    node.insert("post".into(), view);
    if depth > 0 {
        let replies: Vec<Value> = thread
            .children
            .get(uri)
            .map(|kids| {
                kids.iter()
                    .filter(|kid| !hidden.contains(*kid))
                    .filter(|kid| {
                        h.posts.get(*kid).is_some_and(|p| {
                            !p.violates_threadgate && p.in_thread(root_uri) && !h.blocked(&p.did)
                        })
                    })
                    .filter_map(|kid| thread_node(thread, kid, root_uri, hidden, depth - 1))
                    .collect()
            })
            .unwrap_or_default();
        node.insert("replies".into(), Value::Array(replies));
    }
    node.insert(
        "threadContext".into(),
        thread_context(&thread.root_author_likes, uri),
    );
    Some(Value::Object(node))
}
