//! app.bsky.notification.*: the viewer's notifications, newest first.
//!
//! The index keeps notifications; when the viewer last looked at them is
//! private state (`updateSeen`, `views::private`). A `seenAt` parameter
//! takes its place; with neither, every notification is unread. Listing
//! leaves out notifications from accounts the viewer mutes and about
//! threads the viewer muted, as the reference AppView does.

use std::sync::LazyLock;

use axum::response::Response;
use futures_util::future::try_join_all;
use serde_json::{json, Map, Value};
use tokio_postgres::types::ToSql;

use crate::compact::{did_id, live_records};
use crate::cursor::Cursor;
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::fill::Listing;
use crate::routes::keyset::with_cursor;
use crate::routes::{json, Ctx};
use crate::views::{datetime_millis, labels, private, put, put_opt, unix_micros, Hydrator};

/// The reasons the index writes, all `knownValues` of the lexicon.
const REASONS: &[&str] = &[
    "like",
    "repost",
    "follow",
    "mention",
    "reply",
    "quote",
    "like-via-repost",
    "repost-via-repost",
];

/// `indexed_at > $since` when a bound is given, as microseconds since the epoch.
const AFTER_SEEN: &str =
    "($2::int8 IS NULL OR n.indexed_at > 'epoch'::timestamptz + $2::int8 * interval '1 microsecond')";

/// Unread notifications are counted up to this many: each costs a row
/// visit, and no client shows a larger number.
const MAX_UNREAD: i64 = 10_000;

/// One table that holds notifications: the branches of migration 0013's
/// `all_notifications` view, queried apart so that each reads its own index
/// (recipient, then seq newest first) and stops after a page.
struct Source {
    /// The one reason of a table that holds a single kind; `None` for
    /// `notifications`, which holds every other reason.
    reason: Option<&'static str>,
    /// Its notifications for the recipient `$1` as `seq, author, reason,
    /// subject, uri, indexed_at` (the record's CID is read with the record,
    /// `load_records`).
    rows: String,
}

/// A table whose live rows notify the owner of their `subject_uri`, with
/// the predicate of its partial index of migration 0013 (the planner uses
/// the index only when the query repeats it).
fn subject_owner_source(reason: &'static str, view: &str) -> Source {
    Source {
        reason: Some(reason),
        // The view's live rows, with the predicate of the table's partial
        // index by the subject's owner (migration 0021).
        rows: format!(
            "SELECT seq, did AS author, '{reason}'::text AS reason, subject_uri AS subject, uri, \
             indexed_at FROM {view} WHERE subject_actor = {recipient} AND actor <> subject_actor",
            recipient = did_id("$1"),
        ),
    }
}

static SOURCES: LazyLock<[Source; 4]> = LazyLock::new(|| {
    [
        Source {
            reason: None,
            // The author is the record's repo (migration 0028).
            rows: "SELECT seq, split_part(record_uri, '/', 3) AS author, reason, \
                   reason_subject AS subject, record_uri AS uri, indexed_at \
                   FROM notifications WHERE recipient_did = $1"
                .to_owned(),
        },
        subject_owner_source("like", "likes"),
        subject_owner_source("repost", "reposts"),
        // The followed account's id: the `follows` view's live rows, with
        // the predicate of the table's partial index (migration 0023).
        Source {
            reason: Some("follow"),
            rows: format!(
                "SELECT seq, did AS author, 'follow'::text AS reason, NULL::text AS subject, uri, \
                 indexed_at FROM follows \
                 WHERE subject_actor = {recipient} AND actor <> subject_actor",
                recipient = did_id("$1"),
            ),
        },
    ]
});

impl Source {
    /// Whether any of `reasons` (all when `None`) can be in this table.
    fn wanted(&self, reasons: Option<&[String]>) -> bool {
        let Some(reasons) = reasons else {
            return true;
        };
        match self.reason {
            Some(reason) => reasons.iter().any(|r| r == reason),
            None => reasons
                .iter()
                .any(|r| !SOURCES.iter().any(|s| s.reason == Some(r.as_str()))),
        }
    }

    /// A page newest first, after the position `($2, $6, $7)` = (seq, uri,
    /// reason), of the reasons `$4` (all when NULL); `$3` is `seenAt`. It is
    /// read in the index's order (seq) with every row of the last seq it
    /// reaches, so the caller's order (seq, uri, reason) of all the sources
    /// together picks the page from complete seqs: one seq is one commit,
    /// with a few rows for one recipient at most.
    fn page_sql(&self) -> String {
        format!(
            "SELECT n.seq, n.author, n.reason, n.subject, n.uri, \
               to_char(n.indexed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS indexed_at, \
               ($3::int8 IS NOT NULL AND n.indexed_at <= 'epoch'::timestamptz + $3::int8 * interval '1 microsecond') AS is_read \
             FROM ({rows}) n \
             WHERE n.seq <= $2 AND (n.seq < $2 OR (n.uri, n.reason) < ($6, $7)) \
               AND ($4::text[] IS NULL OR n.reason = ANY($4)) \
             ORDER BY n.seq DESC FETCH FIRST $5 ROWS WITH TIES",
            rows = self.rows,
        )
    }

    /// Unread notifications of the recipient `$1`, less those the list
    /// leaves out: from accounts the recipient mutes fully (directly or by a
    /// list) and about threads the recipient muted. The thread of each
    /// notification is looked up only when the recipient muted any.
    fn unread_sql(&self) -> String {
        format!(
            "SELECT count(*) AS unread FROM (SELECT 1 FROM ({rows}) n WHERE {AFTER_SEEN} \
               AND NOT EXISTS (SELECT 1 FROM private_actor_mutes m WHERE m.did = $1 \
                 AND m.subject_did = n.author AND NOT m.only_reposts AND NOT m.only_quoteposts) \
               AND NOT EXISTS (SELECT 1 FROM private_list_mutes lm \
                 JOIN list_items li ON li.list_uri = lm.list_uri \
                 WHERE lm.did = $1 AND li.subject_did = n.author) \
               AND (NOT EXISTS (SELECT 1 FROM private_thread_mutes WHERE did = $1) \
                 OR NOT EXISTS (SELECT 1 FROM posts p JOIN private_thread_mutes t \
                   ON t.did = $1 AND t.root_uri = COALESCE(p.reply_root_uri, p.uri) \
                   WHERE p.uri = CASE WHEN n.reason IN ('{subject_reasons}') \
                     THEN n.subject ELSE n.uri END)) \
             LIMIT {MAX_UNREAD}) unread",
            rows = self.rows,
            subject_reasons = SUBJECT_THREAD_REASONS.join("', '"),
        )
    }
}

/// A page position: the seq, reason and record of the last notification
/// listed. Reasons break ties because one record can notify one account
/// for several (a reply that mentions its parent's author).
fn page_position(cursor: Option<Cursor>) -> XrpcResult<(i64, String, String)> {
    let Some(cursor) = cursor else {
        return Ok((i64::MAX, String::new(), String::new()));
    };
    let bad = || XrpcError::bad_param("cursor", "not a cursor this service issued");
    let (seq, reason) = cursor.key.split_once('/').ok_or_else(bad)?;
    let seq = seq.parse::<i64>().map_err(|_| bad())?;
    Ok((seq, cursor.uri, reason.to_owned()))
}

/// One listed notification, before hydration.
struct Listed {
    seq: i64,
    author: String,
    reason: String,
    subject: Option<String>,
    uri: String,
    indexed_at: String,
    is_read: bool,
}

pub async fn list_notifications(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let limit = ctx.params.limit(1, 100, 50)?;
    let reasons: Vec<String> = ctx
        .params
        .strings("reasons", 50, 64)?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let _ = ctx.params.bool("priority", false)?;
    let seen_param = ctx.params.optional_timestamp("seenAt")?;
    let (after_seq, after_uri, after_reason) = page_position(ctx.params.cursor()?)?;
    let viewer = ctx.require_viewer()?.to_owned();
    let client = ctx.db().await?;
    let reasons = (!reasons.is_empty()).then_some(reasons);
    let stored_seen = private::notifications_seen(&client, &viewer).await?;
    let seen_at = seen_param.or_else(|| stored_seen.map(unix_micros));

    let mut statements = Vec::new();
    for source in SOURCES.iter().filter(|s| s.wanted(reasons.as_deref())) {
        statements.push(client.prepare_cached(&source.page_sql()).await?);
    }
    let params: [&(dyn ToSql + Sync); 7] = [
        &viewer,
        &after_seq,
        &seen_at,
        &reasons,
        &limit,
        &after_uri,
        &after_reason,
    ];
    let pages = try_join_all(statements.iter().map(|s| client.query(s, &params))).await?;
    let mut listed: Vec<Listed> = pages
        .iter()
        .flatten()
        .map(|row| {
            Ok(Listed {
                seq: row.col("seq")?,
                author: row.col("author")?,
                reason: row.col("reason")?,
                subject: row.col("subject")?,
                uri: row.col("uri")?,
                indexed_at: row.col("indexed_at")?,
                is_read: row.col("is_read")?,
            })
        })
        .collect::<XrpcResult<_>>()?;
    listed.sort_by(|a, b| (b.seq, &b.uri, &b.reason).cmp(&(a.seq, &a.uri, &a.reason)));
    listed.truncate(usize::try_from(limit).unwrap_or(0));

    let authors: Vec<String> = listed.iter().map(|n| n.author.clone()).collect();
    let record_uris: Vec<String> = listed.iter().map(|n| n.uri.clone()).collect();
    let thread_posts: Vec<String> = listed.iter().filter_map(thread_post).collect();
    let hydrator = Hydrator::new(&client, ctx.config(), ctx.viewer());
    let (shown, hiding) = labels::request_labelers(ctx.config());
    let (hydrated, records, muted_threads, moderation) = tokio::join!(
        hydrator.hydrate(&[], &authors),
        live_records(&client, &record_uris),
        private::in_muted_threads(&client, &viewer, &thread_posts),
        labels::load_moderation(&client, &record_uris, &shown, &hiding),
    );
    let (hydrated, records, muted_threads) = (hydrated?, records?, muted_threads?);
    let moderation = moderation?;

    let notifications: Vec<Value> = listed
        .iter()
        .filter_map(|n| {
            if hydrated.blocked(&n.author)
                || hydrated.muted(&n.author)
                || thread_post(n).is_some_and(|uri| muted_threads.contains(&uri))
                || !REASONS.contains(&n.reason.as_str())
                || moderation.taken_down.contains(&n.uri)
            {
                return None;
            }
            let author = hydrated.profile_view(&n.author)?;
            let (cid, record) = match records.get(&n.uri)? {
                (Some(cid), record) => (cid.clone(), record.clone()),
                (None, _) => return None,
            };
            // Labelers' labels first, then the record's self-labels.
            let mut shown = moderation.labels.get(&n.uri).cloned().unwrap_or_default();
            shown.extend(labels::self_labels(&n.uri, &cid, &record));
            let mut m = Map::new();
            put(&mut m, "uri", &n.uri);
            put(&mut m, "cid", &cid);
            m.insert("author".into(), author);
            put(&mut m, "reason", &n.reason);
            put_opt(&mut m, "reasonSubject", n.subject.as_deref());
            m.insert("record".into(), record);
            m.insert("isRead".into(), json!(n.is_read));
            put(&mut m, "indexedAt", &n.indexed_at);
            m.insert("labels".into(), labels::to_value(&shown));
            Some(Value::Object(m))
        })
        .collect();
    let next = (listed.len() as i64 >= limit)
        .then(|| listed.last())
        .flatten()
        .map(|n| Cursor::new(format!("{}/{}", n.seq, n.reason), n.uri.as_str()).encode());
    // `priority` is a preference of the reference AppView's that is not
    // kept here: the default.
    let mut out = json!({ "notifications": notifications, "priority": false });
    if let Some(seen) = stored_seen {
        out["seenAt"] = json!(datetime_millis(seen));
    }
    Listing::serialize(&with_cursor(out, next), "notifications", limit)
}

/// The reasons whose notification is about the thread of its subject (the
/// liked or reposted post), and those about the thread of the record itself
/// (a post).
const SUBJECT_THREAD_REASONS: [&str; 4] =
    ["like", "repost", "like-via-repost", "repost-via-repost"];
const RECORD_THREAD_REASONS: [&str; 3] = ["reply", "mention", "quote"];

/// The post whose thread a notification is about.
fn thread_post(n: &Listed) -> Option<String> {
    let reason = n.reason.as_str();
    if SUBJECT_THREAD_REASONS.contains(&reason) {
        n.subject.clone()
    } else if RECORD_THREAD_REASONS.contains(&reason) {
        Some(n.uri.clone())
    } else {
        None
    }
}

pub async fn get_unread_count(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let _ = ctx.params.bool("priority", false)?;
    let seen_param = ctx.params.optional_timestamp("seenAt")?;
    let viewer = ctx.require_viewer()?.to_owned();
    let client = ctx.db().await?;
    let seen_at = match seen_param {
        Some(seen) => Some(seen),
        None => private::notifications_seen(&client, &viewer)
            .await?
            .map(unix_micros),
    };
    let mut statements = Vec::new();
    for source in SOURCES.iter() {
        statements.push(client.prepare_cached(&source.unread_sql()).await?);
    }
    let params: [&(dyn ToSql + Sync); 2] = [&viewer, &seen_at];
    let counts = try_join_all(statements.iter().map(|s| client.query_one(s, &params))).await?;
    let count: i64 = counts
        .iter()
        .map(|row| row.col::<i64>("unread"))
        .sum::<XrpcResult<i64>>()?;
    json(&json!({ "count": count.min(MAX_UNREAD) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn a_reason_filter_reads_only_the_tables_that_hold_those_reasons() {
        let read = |list: Option<&[&str]>| -> Vec<Option<&str>> {
            let list = list.map(reasons);
            SOURCES
                .iter()
                .filter(|s| s.wanted(list.as_deref()))
                .map(|s| s.reason)
                .collect()
        };
        assert_eq!(read(None).len(), SOURCES.len());
        assert_eq!(read(Some(&["like"])), vec![Some("like")]);
        assert_eq!(read(Some(&["reply", "follow"])), vec![None, Some("follow")]);
        assert_eq!(read(Some(&["like-via-repost"])), vec![None]);
    }

    #[test]
    fn subject_owner_sources_repeat_their_index_predicate() {
        assert_eq!(
            SOURCES[2].rows,
            "SELECT seq, did AS author, 'repost'::text AS reason, subject_uri AS subject, uri, \
             indexed_at FROM reposts WHERE subject_actor = \
             (SELECT known.id FROM dids known WHERE known.did = $1) AND actor <> subject_actor"
        );
        assert_eq!(SOURCES[1].reason, Some("like"));
        assert!(SOURCES[1].rows.contains("FROM likes WHERE"));
        // Follows too: by the followed account's id, with the predicate of
        // the partial index (migration 0023).
        assert_eq!(SOURCES[3].reason, Some("follow"));
        assert!(SOURCES[3]
            .rows
            .ends_with("known.did = $1) AND actor <> subject_actor"));
    }

    #[test]
    fn cursors_carry_seq_reason_and_uri() {
        let uri = "at://did:plc:x/app.bsky.feed.post/3k";
        let cursor = Cursor::new("42/reply", uri);
        assert_eq!(
            page_position(Some(cursor)).expect("position"),
            (42, uri.to_owned(), "reply".to_owned())
        );
        assert!(page_position(Some(Cursor::new("42", uri))).is_err());
        assert!(page_position(Some(Cursor::new("x/like", uri))).is_err());
        assert_eq!(page_position(None).expect("start").0, i64::MAX);
    }
}
