//! Posts: loading them with their counts and threadgates in one query, and the
//! viewer's likes and reposts of them in another.

use std::collections::HashMap;

use crate::views::actor::{ACTOR_COLUMNS, ACTOR_JOINS, NO_ACTOR_COLUMNS};
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
    /// The record as stored, JSON text: views write it out as it is rather
    /// than parsing it into a tree and copying that into each view.
    pub record: Box<RawValue>,
    /// The record's `embed`, the one part of it that views read.
    pub embed: Option<Value>,
    pub indexed_at: String,
    pub likes: i64,
    pub reposts: i64,
    pub replies: i64,
    pub quotes: i64,
    pub reply_root_uri: Option<String>,
    pub reply_parent_uri: Option<String>,
    pub embed_record_uri: Option<String>,
    pub threadgate: Option<Threadgate>,
    /// Posts whose postgate detached this one's quote of them.
    pub detached_by_quoted: bool,
    pub embedding_disabled: bool,
}

#[derive(Debug, Clone)]
pub struct Threadgate {
    pub uri: String,
    pub cid: String,
    pub record: Value,
    pub hidden_replies: Vec<String>,
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
    p.reply_root_uri, p.reply_parent_uri, p.embed_record_uri";

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
/// DIDs to load besides the posts' authors), `ROW_PAGE` rows (the `page`
/// CTE's `(uri, rkey, subject, cid, at, n)`) and `ROW_ACTOR` rows.
/// Times are sent as timestamps and written by [`datetime_millis`], and a
/// post's embed is read from its record text: PostgreSQL would spend more on
/// `to_char` and on a second pass over each record.
pub fn posts_statement(ctes: &str, reply_refs: &str, viewer: &str, feed: Option<&str>) -> String {
    // A feed's statement also returns its page and the authors of its posts:
    // every row then carries both the post and the actor columns.
    let (page, no_actor, actors) = match feed {
        Some(dids) => (
            format!(
                "SELECT {ROW_PAGE}, uri, rkey, subject, cid, at, n, NULL::bigint, NULL::bigint, \
                        NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, \
                        NULL::jsonb, NULL::jsonb, NULL::bool, NULL::bool, {NO_ACTOR_COLUMNS} \
                 FROM page UNION ALL "
            ),
            format!(", {NO_ACTOR_COLUMNS}"),
            format!(
                " UNION ALL SELECT {ROW_ACTOR}, {NO_POST_COLUMNS}, {ACTOR_COLUMNS} FROM ( \
                    SELECT DISTINCT did FROM ( \
                        SELECT did FROM shown UNION ALL SELECT did FROM quoted \
                        UNION ALL SELECT {dids}) x \
                 ) d {ACTOR_JOINS}"
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
         {page} \
         SELECT {ROW_POST}, p.uri, p.cid, p.did, p.record::text, p.indexed_at, \
                COALESCE(c.likes, 0), COALESCE(c.reposts, 0), COALESCE(c.replies, 0), COALESCE(c.quotes, 0), \
                p.reply_root_uri, p.reply_parent_uri, p.embed_record_uri, \
                tg.uri, tg.cid, tg.record, tg.hidden_replies, \
                p.embed_record_uri IS NOT NULL AND EXISTS (SELECT 1 FROM postgates pg \
                    WHERE pg.post_uri = p.embed_record_uri AND pg.detached_embedding_uris ? p.uri), \
                CASE WHEN {viewer} THEN COALESCE((SELECT own.embedding_rules @> '[{{\"$type\": \"app.bsky.feed.postgate#disableRule\"}}]' \
                    FROM postgates own WHERE own.uri = 'at://' || p.did || '/app.bsky.feed.postgate/' || p.rkey), false) \
                ELSE false END {no_actor} \
         FROM (SELECT * FROM shown UNION ALL SELECT * FROM quoted) p \
         LEFT JOIN post_counts c ON c.uri = p.uri \
         LEFT JOIN LATERAL ( \
             SELECT tg.uri, tg.cid, tgr.record, tg.hidden_replies FROM threadgates tg \
             LEFT JOIN records tgr ON tgr.uri = tg.uri \
             WHERE tg.uri = CASE WHEN p.reply_parent_uri IS NULL \
                 THEN 'at://' || p.did || '/app.bsky.feed.threadgate/' || p.rkey END \
         ) tg ON true {actors}"
    )
}

/// The post columns of [`posts_statement`] as NULLs of their types.
const NO_POST_COLUMNS: &str = "NULL::text, NULL::text, NULL::text, NULL::text, NULL::timestamptz, \
    NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, \
    NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, \
    NULL::jsonb, NULL::jsonb, NULL::bool, NULL::bool";

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

/// Column 0 of a [`posts_statement`] row: a feed page's item, a post, or
/// (from [`ACTOR_AT`] on) an actor.
pub const ROW_PAGE: i32 = 0;
pub const ROW_POST: i32 = 1;
pub const ROW_ACTOR: i32 = 2;
/// The first of a feed statement's actor columns.
pub const ACTOR_AT: usize = 19;

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
) -> Result<HashMap<String, PostInfo>, tokio_postgres::Error> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(&POSTS_BY_URI).await?,
            &[&uris, &what.reply_refs, &what.viewer],
        )
        .await?;
    Ok(rows
        .iter()
        .map(post_info)
        .map(|info| (info.uri.clone(), info))
        .collect())
}

/// A `ROW_POST` row of [`posts_statement`].
pub fn post_info(row: &Row) -> PostInfo {
    let threadgate = row.get::<_, Option<String>>(13).map(|uri| Threadgate {
        uri,
        cid: row.get::<_, Option<String>>(14).unwrap_or_default(),
        record: row.get::<_, Option<Value>>(15).unwrap_or(Value::Null),
        hidden_replies: string_array(row.get::<_, Option<Value>>(16)),
    });
    let record = raw_json(row.get(4));
    PostInfo {
        uri: row.get(1),
        cid: row.get(2),
        did: row.get(3),
        embed: record_embed(&record),
        record,
        indexed_at: datetime_millis(row.get(5)),
        likes: row.get(6),
        reposts: row.get(7),
        replies: row.get(8),
        quotes: row.get(9),
        reply_root_uri: row.get(10),
        reply_parent_uri: row.get(11),
        embed_record_uri: row.get(12),
        threadgate,
        detached_by_quoted: row.get(17),
        embedding_disabled: row.get(18),
    }
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

const POST_VIEWER_QUERY: &str = "\
SELECT u.uri, \
  (SELECT l.uri FROM likes l WHERE l.subject_uri = u.uri AND l.did = $2 ORDER BY l.rkey LIMIT 1), \
  (SELECT r.uri FROM reposts r WHERE r.subject_uri = u.uri AND r.did = $2 ORDER BY r.rkey LIMIT 1) \
FROM unnest($1::text[]) AS u(uri)";

pub async fn load_post_viewer(
    client: &Db,
    viewer: &str,
    uris: &[String],
) -> Result<HashMap<String, PostViewer>, tokio_postgres::Error> {
    if uris.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(POST_VIEWER_QUERY).await?,
            &[&uris, &viewer],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.get(0),
                PostViewer {
                    like: row.get(1),
                    repost: row.get(2),
                },
            )
        })
        .collect())
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
