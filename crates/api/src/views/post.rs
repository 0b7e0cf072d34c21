//! Posts: loading them with their counts and threadgates in one query, and the
//! viewer's likes and reposts of them in another.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use crate::compact::{collection_id, did_id, subject_is, viewer_row};
use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::actor::{ACTOR_COLUMNS, ACTOR_JOINS, NO_ACTOR_COLUMNS};
use crate::views::labels::{self_labels_in_text, Label};
use crate::views::{datetime_millis, Db};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio_postgres::Row;

#[derive(Debug, Clone)]
pub struct PostInfo {
    pub uri: String,
    pub cid: String,
    pub did: String,
    /// The author's `dids` id and the record key as stored (`rkey_id`): the
    /// post's key in the compact rows that reference it.
    pub actor: i32,
    pub rkey_id: i64,
    /// The record as stored, JSON text: views write it out as it is rather
    /// than parsing it into a tree and copying that into each view.
    pub record: Box<RawValue>,
    /// The record's `embed`, the one part of it that views read.
    pub embed: Option<Value>,
    /// The record's self-labels.
    pub labels: Vec<Label>,
    pub indexed_at: String,
    pub likes: i64,
    pub reposts: i64,
    pub replies: i64,
    pub quotes: i64,
    pub reply_root_uri: Option<String>,
    pub reply_parent_uri: Option<String>,
    pub embed_record_uri: Option<String>,
    /// The gate of the post's thread: its own for a root; for a reply the
    /// root's, only when a viewer asks (whether the viewer may reply).
    pub threadgate: Option<Threadgate>,
    /// Posts whose postgate detached this one's quote of them.
    pub detached_by_quoted: bool,
    pub embedding_disabled: bool,
    /// A reply its thread's gate disallowed when it was indexed: threads
    /// leave it out, and a feed shows it without its reply context.
    pub violates_threadgate: bool,
}

impl PostInfo {
    /// Whether the post belongs to the thread whose root is `root_uri`: its
    /// record names that root, or it is that root. The official AppView
    /// shows no post of another thread in a thread (its thread boundary).
    pub fn in_thread(&self, root_uri: &str) -> bool {
        self.reply_root_uri.as_deref().unwrap_or(&self.uri) == root_uri
    }
}

#[derive(Debug, Clone)]
pub struct Threadgate {
    pub uri: String,
    pub cid: String,
    pub record: Value,
    pub hidden_replies: Vec<String>,
}

impl Threadgate {
    /// The lists whose members the gate lets reply.
    pub fn allowed_lists(&self) -> impl Iterator<Item = &str> {
        self.rules()
            .filter(|r| r.get("$type").and_then(Value::as_str) == Some(LIST_RULE))
            .filter_map(|r| r.get("list").and_then(Value::as_str))
    }

    /// The `allow` rules; `None` when the gate sets none (anyone may reply;
    /// an empty list lets no one).
    pub fn allow(&self) -> Option<&[Value]> {
        self.record.get("allow")?.as_array().map(Vec::as_slice)
    }

    fn rules(&self) -> impl Iterator<Item = &Value> {
        self.allow().unwrap_or_default().iter()
    }

    /// Whether a rule of type `rule` is among the gate's.
    pub fn allows(&self, rule: &str) -> bool {
        self.rules()
            .any(|r| r.get("$type").and_then(Value::as_str) == Some(rule))
    }
}

/// The accounts the viewer follows among a post's 500 newest likers, as
/// the thread screen's anchor shows them (`viewer.knownLikers`).
pub struct KnownLikers {
    pub count: i64,
    /// The three who liked it last.
    pub actors: Vec<String>,
}

/// The known likers of `uri` for `viewer`, in one query; None when there
/// are none.
pub async fn load_known_likers(
    client: &Db,
    viewer: &str,
    uri: &str,
) -> XrpcResult<Option<KnownLikers>> {
    static KNOWN_LIKERS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT l.did, count(*) OVER () AS n FROM ( \
               SELECT did, rkey_id FROM likes x WHERE {subject} ORDER BY rkey_id DESC LIMIT 500) l \
             WHERE EXISTS (SELECT 1 FROM follows f WHERE f.did = $2 AND f.subject_did = l.did) \
             ORDER BY l.rkey_id DESC LIMIT 3",
            subject = subject_is("x", "$1")
        )
    });
    let stmt = client.prepare_cached(&KNOWN_LIKERS).await?;
    let rows = client.query(&stmt, &[&uri, &viewer]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(KnownLikers {
        count: first.col("n")?,
        actors: rows
            .iter()
            .map(|r| r.col("did"))
            .collect::<XrpcResult<_>>()?,
    }))
}

/// Whether a post record's facets mention `did`.
pub fn mentions(record: &RawValue, did: &str) -> bool {
    #[derive(Deserialize)]
    struct Facets {
        #[serde(default)]
        facets: Vec<Facet>,
    }
    #[derive(Deserialize)]
    struct Facet {
        #[serde(default)]
        features: Vec<Feature>,
    }
    #[derive(Deserialize)]
    struct Feature {
        #[serde(rename = "$type")]
        type_: Option<String>,
        did: Option<String>,
    }
    serde_json::from_str::<Facets>(record.get()).is_ok_and(|r| {
        r.facets.iter().flat_map(|f| &f.features).any(|f| {
            f.type_.as_deref() == Some("app.bsky.richtext.facet#mention")
                && f.did.as_deref() == Some(did)
        })
    })
}

pub const MENTION_RULE: &str = "app.bsky.feed.threadgate#mentionRule";
pub const FOLLOWER_RULE: &str = "app.bsky.feed.threadgate#followerRule";
pub const FOLLOWING_RULE: &str = "app.bsky.feed.threadgate#followingRule";
pub const LIST_RULE: &str = "app.bsky.feed.threadgate#listRule";

/// Which of `lists` have `viewer` as a member, in one query (none asked
/// when no gate names a list).
pub async fn load_viewer_lists(
    client: &Db,
    viewer: &str,
    lists: &[String],
) -> XrpcResult<HashSet<String>> {
    if lists.is_empty() {
        return Ok(HashSet::new());
    }
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT list_uri FROM list_items \
             WHERE subject_did = $1 AND list_uri = ANY($2)",
        )
        .await?;
    client
        .query(&stmt, &[&viewer, &lists])
        .await?
        .iter()
        .map(|row| row.col("list_uri"))
        .collect()
}

/// The viewer's own like and repost of one post.
#[derive(Debug, Clone, Default)]
pub struct PostViewer {
    pub like: Option<String>,
    pub repost: Option<String>,
}

/// The columns of a post row that views read, as the hydration statement's
/// CTEs carry them (never `p.*`: a row also holds its text, facets and embed
/// columns, which the record repeats).
pub const POST_COLUMNS: &str = "p.uri, p.did, p.rkey, p.cid, p.record, p.indexed_at, \
    p.reply_root_uri, p.reply_parent_uri, p.embed_record_uri, p.violates_threadgate, \
    p.actor, p.rkey_id";

/// The statement that loads a page of posts: `listed` (a CTE with
/// [`POST_COLUMNS`], defined by the caller along with anything it needs,
/// such as a feed's `page`), with `reply_refs` (SQL boolean) the posts they
/// reply to (parent and root), then the posts that any of those quote. The
/// record is read from the post's own row. Threadgates only apply to (and are only
/// shown on) thread roots, and whether the author disabled embedding is only
/// shown to a viewer (`viewer`, SQL boolean), so the other posts skip those
/// lookups (a NULL key ends an index scan before it reads a page; a filter
/// beside the key would not).
///
/// Rows are posts (read by [`post_info`]) and, for a feed (`feed`: SQL for
/// DIDs to load besides the posts' authors), `ROW_ACTOR` rows and `ROW_PAGE`
/// rows (the `page` CTE's `(uri, rkey, subject, cid, repost_record, at,
/// n)`, as the columns `uri`, `page_rkey`, `page_subject`, `cid`,
/// `record`, `indexed_at` and `page_n`: a repost's stored CID and the
/// record its view shows, from which `crate::compact::row_cid` derives
/// the CID the row does not store); the column `kind` tells them apart.
/// Times are sent as timestamps and written by [`datetime_millis`], and a
/// post's embed is read from its record text: PostgreSQL would spend more on
/// `to_char` and on a second pass over each record.
pub fn posts_statement(ctes: &str, reply_refs: &str, viewer: &str, feed: Option<&str>) -> String {
    // A feed's statement also returns its page and the authors of its posts:
    // every row then carries the post, the actor and the page columns. The
    // post rows come first, so their names are the columns'.
    let (no_actor, actors, page) = match feed {
        Some(dids) => (
            format!(", {NO_ACTOR_COLUMNS}, {NO_PAGE_COLUMNS}"),
            format!(
                " UNION ALL SELECT {ROW_ACTOR}, {NO_POST_COLUMNS}, {ACTOR_COLUMNS}, {NO_PAGE_COLUMNS} FROM ( \
                    SELECT DISTINCT did FROM ( \
                        SELECT did FROM shown UNION ALL SELECT did FROM quoted \
                        UNION ALL SELECT {dids}) x \
                 ) d {ACTOR_JOINS}"
            ),
            format!(
                " UNION ALL SELECT {ROW_PAGE}, uri, cid, NULL::text, repost_record, at, \
                        NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, \
                        NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, \
                        NULL::jsonb, NULL::jsonb, NULL::bool, NULL::bool, NULL::bool, \
                        NULL::int4, NULL::int8, {NO_ACTOR_COLUMNS}, \
                        rkey, subject, n \
                 FROM page"
            ),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    format!(
        "WITH {ctes}, replied AS MATERIALIZED ( \
            SELECT {POST_COLUMNS} FROM ( \
                SELECT DISTINCT r.uri FROM listed l \
                CROSS JOIN LATERAL (VALUES (l.reply_parent_uri), (l.reply_root_uri)) AS r(uri) \
                WHERE {reply_refs} AND r.uri IS NOT NULL AND r.uri NOT IN (SELECT uri FROM listed) \
            ) r JOIN posts p ON p.uri = r.uri \
         ), shown AS ( \
            SELECT * FROM listed UNION ALL SELECT * FROM replied \
         ), quoted AS ( \
            SELECT {POST_COLUMNS} FROM ( \
                SELECT DISTINCT s.embed_record_uri AS uri FROM shown s \
                WHERE split_part(s.embed_record_uri, '/', 4) = 'app.bsky.feed.post' \
                  AND s.embed_record_uri NOT IN (SELECT uri FROM shown) \
            ) q JOIN posts p ON p.uri = q.uri \
         ) \
         SELECT {ROW_POST} AS kind, p.uri AS uri, p.cid AS cid, p.did AS did, \
                p.record::text AS record, p.indexed_at AS indexed_at, \
                COALESCE(c.likes, 0) AS likes, COALESCE(c.reposts, 0) AS reposts, \
                COALESCE(c.replies, 0) AS replies, COALESCE(c.quotes, 0) AS quotes, \
                p.reply_root_uri AS reply_root_uri, p.reply_parent_uri AS reply_parent_uri, \
                p.embed_record_uri AS embed_record_uri, \
                tg.uri AS threadgate_uri, tg.cid AS threadgate_cid, \
                tg.record AS threadgate_record, tg.hidden_replies AS threadgate_hidden_replies, \
                p.embed_record_uri IS NOT NULL AND EXISTS (SELECT 1 FROM postgates pg \
                    WHERE pg.post_uri = p.embed_record_uri AND pg.detached_embedding_uris ? p.uri) \
                    AS detached_by_quoted, \
                CASE WHEN {viewer} THEN COALESCE((SELECT own.embedding_rules @> '[{{\"$type\": \"app.bsky.feed.postgate#disableRule\"}}]' \
                    FROM postgates own WHERE own.uri = 'at://' || p.did || '/app.bsky.feed.postgate/' || p.rkey), false) \
                ELSE false END AS embedding_disabled, \
                p.violates_threadgate AS violates_threadgate, \
                p.actor AS post_actor, p.rkey_id AS post_rkey_id {no_actor} \
         FROM (SELECT * FROM shown UNION ALL SELECT * FROM quoted) p \
         LEFT JOIN LATERAL counts_of(p.actor, 'app.bsky.feed.post', p.rkey_id) c ON true \
         LEFT JOIN LATERAL ( \
             SELECT tg.uri, tg.cid, tgr.record, tg.hidden_replies FROM threadgates tg \
             LEFT JOIN records tgr ON tgr.uri = tg.uri \
             WHERE tg.uri = CASE WHEN p.reply_parent_uri IS NULL \
                 THEN 'at://' || p.did || '/app.bsky.feed.threadgate/' || p.rkey \
                 WHEN {viewer} THEN 'at://' || split_part(p.reply_root_uri, '/', 3) \
                     || '/app.bsky.feed.threadgate/' || split_part(p.reply_root_uri, '/', 5) END \
         ) tg ON true {actors}{page}"
    )
}

/// The columns only a feed's page rows fill, as NULLs of their types and
/// with their names.
const NO_PAGE_COLUMNS: &str =
    "NULL::text AS page_rkey, NULL::text AS page_subject, NULL::bigint AS page_n";

/// The post columns of [`posts_statement`] as NULLs of their types.
const NO_POST_COLUMNS: &str = "NULL::text, NULL::text, NULL::text, NULL::text, NULL::timestamptz, \
    NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, \
    NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, \
    NULL::jsonb, NULL::jsonb, NULL::bool, NULL::bool, NULL::bool, NULL::int4, NULL::int8";

/// The statement of [`load_posts`]: `$1` the posts, `$2` whether to load the
/// posts they reply to, `$3` whether a viewer is asking.
static POSTS_BY_URI: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    posts_statement(
        &format!(
            "listed AS MATERIALIZED ( \
                SELECT {POST_COLUMNS} FROM unnest($1::text[]) AS u(uri) JOIN posts p ON p.uri = u.uri)"
        ),
        "$2",
        "$3",
        None,
    )
});

/// The `kind` of a [`posts_statement`] row: a feed page's item, a post, or
/// an actor.
pub const ROW_PAGE: i32 = 0;
pub const ROW_POST: i32 = 1;
pub const ROW_ACTOR: i32 = 2;

/// What to load besides the listed posts (the posts they quote always are).
#[derive(Debug, Clone, Copy)]
pub struct PostLoad {
    /// Also the posts the listed ones reply to (feeds show parent and root).
    pub reply_refs: bool,
    /// A viewer is asking: their view of each post says whether it can be
    /// embedded.
    pub viewer: bool,
}

pub async fn load_posts(
    client: &Db,
    uris: &[String],
    what: PostLoad,
) -> XrpcResult<HashMap<String, PostInfo>> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(&POSTS_BY_URI).await?,
            &[&uris, &what.reply_refs, &what.viewer],
        )
        .await?;
    rows.iter()
        .map(|row| post_info(row).map(|info| (info.uri.clone(), info)))
        .collect()
}

/// A `ROW_POST` row of [`posts_statement`].
pub fn post_info(row: &Row) -> XrpcResult<PostInfo> {
    let threadgate = match row.col::<Option<String>>("threadgate_uri")? {
        Some(uri) => Some(Threadgate {
            uri,
            cid: row
                .col::<Option<String>>("threadgate_cid")?
                .unwrap_or_default(),
            record: row
                .col::<Option<Value>>("threadgate_record")?
                .unwrap_or(Value::Null),
            hidden_replies: string_array(row.col("threadgate_hidden_replies")?),
        }),
        None => None,
    };
    let record = raw_json(row.col("record")?);
    let uri: String = row.col("uri")?;
    let cid: String = row.col("cid")?;
    Ok(PostInfo {
        labels: self_labels_in_text(&uri, &cid, record.get()),
        uri,
        cid,
        did: row.col("did")?,
        actor: row.col("post_actor")?,
        rkey_id: row.col("post_rkey_id")?,
        embed: record_embed(&record),
        record,
        indexed_at: datetime_millis(row.col("indexed_at")?),
        likes: row.col("likes")?,
        reposts: row.col("reposts")?,
        replies: row.col("replies")?,
        quotes: row.col("quotes")?,
        reply_root_uri: row.col("reply_root_uri")?,
        reply_parent_uri: row.col("reply_parent_uri")?,
        embed_record_uri: row.col("embed_record_uri")?,
        threadgate,
        detached_by_quoted: row.col("detached_by_quoted")?,
        embedding_disabled: row.col("embedding_disabled")?,
        violates_threadgate: row.col("violates_threadgate")?,
    })
}

/// A record's `embed`, the one part of it that views read. Most posts have
/// none, and the text they were stored as (by the index, or by PostgreSQL
/// from `jsonb`) writes keys unescaped, so a record without the quoted key
/// has no embed and is not parsed a second time.
fn record_embed(record: &RawValue) -> Option<Value> {
    #[derive(Deserialize)]
    struct Embedding {
        embed: Option<Value>,
    }
    if !record.get().contains("\"embed\"") {
        return None;
    }
    serde_json::from_str::<Embedding>(record.get()).ok()?.embed
}

/// JSON text from PostgreSQL as a raw value; `null` when there is none (a
/// post whose record was never stored).
fn raw_json(text: Option<String>) -> Box<RawValue> {
    text.and_then(|text| RawValue::from_string(text).ok())
        .unwrap_or_else(|| RawValue::NULL.to_owned())
}

fn string_array(value: Option<Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A row `v` whose subject is the post `u` (a `subjects` row) of
/// [`POST_VIEWER_QUERY`].
const SUBJECT_KEYS: &str = "v.subject_actor = u.actor AND v.subject_rkey = u.rkey \
    AND v.subject_collection = u.collection";

static POST_VIEWER_QUERY: LazyLock<String> = LazyLock::new(|| {
    format!(
        // The viewer's id and the posts' collection are looked up once; each
        // post comes with its own ids (`PostInfo::actor`, `rkey_id`), so no
        // post's URI is parsed or its author looked up again.
        "WITH viewer AS MATERIALIZED (SELECT {viewer_id} AS id), \
         subjects AS MATERIALIZED ( \
           SELECT u.uri, u.actor, u.rkey, {posts} AS collection \
           FROM unnest($1::text[], $3::int4[], $4::int8[]) AS u(uri, actor, rkey)) \
         SELECT u.uri, {liked} AS liked, {reposted} AS reposted FROM subjects u, viewer",
        viewer_id = did_id("$2"),
        posts = collection_id("'app.bsky.feed.post'"),
        liked = viewer_row(
            "like_rows",
            "app.bsky.feed.like",
            "viewer.id",
            "$2",
            SUBJECT_KEYS
        ),
        reposted = viewer_row(
            "repost_rows",
            "app.bsky.feed.repost",
            "viewer.id",
            "$2",
            SUBJECT_KEYS
        ),
    )
});

/// The viewer's own like and repost of each of `posts`.
pub async fn load_post_viewer<'a>(
    client: &Db,
    viewer: &str,
    posts: impl IntoIterator<Item = &'a PostInfo>,
) -> XrpcResult<HashMap<String, PostViewer>> {
    let (mut uris, mut actors, mut rkeys) = (Vec::new(), Vec::new(), Vec::new());
    for post in posts {
        uris.push(post.uri.as_str());
        actors.push(post.actor);
        rkeys.push(post.rkey_id);
    }
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(&POST_VIEWER_QUERY).await?,
            &[&uris, &viewer, &actors, &rkeys],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let viewer = PostViewer {
                like: row.col("liked")?,
                repost: row.col("reposted")?,
            };
            Ok((row.col("uri")?, viewer))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embed_of(text: &str) -> Option<Value> {
        record_embed(&raw_json(Some(text.to_owned())))
    }

    #[test]
    fn embed_is_read_from_either_writer_s_text() {
        let images = serde_json::json!({"$type": "app.bsky.embed.images", "images": []});
        // As the index writes it, and as PostgreSQL prints a `jsonb`.
        let compact = r#"{"text":"hi","embed":{"$type":"app.bsky.embed.images","images":[]}}"#;
        let spaced = r#"{"text": "hi", "embed": {"$type": "app.bsky.embed.images", "images": []}}"#;
        assert_eq!(embed_of(compact), Some(images.clone()));
        assert_eq!(embed_of(spaced), Some(images));
        assert_eq!(embed_of(r#"{"text":"no embed here"}"#), None);
        // The key's name inside a string is parsed, and still no embed.
        assert_eq!(embed_of(r#"{"text":"say \"embed\""}"#), None);
    }
}
