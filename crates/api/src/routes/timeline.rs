//! app.bsky.feed.*: the viewer's following timeline and list feeds — posts
//! (and for the timeline, reposts) of a set of accounts, newest first.
//!
//! Each account contributes a share of its newest rows (a backward index
//! scan each: posts by `(did, rkey DESC)`, reposts by their `(actor,
//! rkey)` key), and only the accounts that may hold more of the page are
//! read further ([`newest_rows`]), so the work grows with the number of
//! accounts, not with their post counts.

use std::collections::HashMap;
use std::sync::LazyLock;

use skyhose_proto::tid::Tid;
use tokio_postgres::types::ToSql;

use crate::compact::{did_id, row_cid, shown_repost, until_cursor, LIVE_REPOST_KEYS};
use crate::cursor::Cursor;
use crate::db::{unreadable_row, RowExt};
use crate::error::{XrpcError, XrpcResult};
use crate::routes::fill::Listing;
use crate::routes::keyset::Keyset;
use crate::routes::Ctx;
use crate::views::actor::served_actor;
use crate::views::hydrate::{FeedItem, Reason};
use crate::views::{datetime_millis, uri_did, Db, Hydrator};

/// A row that may be on the page, known by its keys only: its record key
/// and URI (the page's order) and, for a repost, its compact key, by which
/// the page's reposts are read once the page is chosen.
struct Candidate {
    rkey: String,
    uri: String,
    /// The reposter and the repost's `(actor, rkey_id)` key.
    repost: Option<(String, i32, i64)>,
}

impl Candidate {
    /// A row of [`newest_rows`]' statements: `did`, `rkey` (a post's key,
    /// or a repost's key when it is not a TID), `actor` and `rkey_id` (a
    /// repost's compact key, NULL for a post).
    fn read(row: &tokio_postgres::Row) -> XrpcResult<Self> {
        let did: String = row.col("did")?;
        let name: Option<String> = row.col("rkey")?;
        Ok(match row.col::<Option<i64>>("rkey_id")? {
            None => {
                let rkey =
                    name.ok_or_else(|| unreadable_row("a post row without its record key"))?;
                Candidate {
                    uri: format!("at://{did}/app.bsky.feed.post/{rkey}"),
                    rkey,
                    repost: None,
                }
            }
            Some(rkey_id) => {
                let rkey = match name {
                    Some(name) => name,
                    None => Tid::from_value(rkey_id)
                        .ok_or_else(|| {
                            unreadable_row("a repost's stored key is neither a TID nor a name")
                        })?
                        .to_string(),
                };
                Candidate {
                    uri: format!("at://{did}/app.bsky.feed.repost/{rkey}"),
                    rkey,
                    repost: Some((did, row.col("actor")?, rkey_id)),
                }
            }
        })
    }

    /// Whether this row comes after `other` in its account's order:
    /// posts by record key, reposts by their stored key.
    fn older_than(&self, other: &Candidate) -> bool {
        match (&self.repost, &other.repost) {
            (Some((_, _, a)), Some((_, _, b))) => a < b,
            _ => self.rkey < other.rkey,
        }
    }

    /// The account and kind of row whose newest rows this one is among.
    fn stream(&self) -> (&str, bool) {
        match &self.repost {
            Some((by, _, _)) => (by.as_str(), true),
            None => (uri_did(&self.uri).unwrap_or_default(), false),
        }
    }
}

/// Where the first read of one account's posts (or reposts) stopped, when
/// it returned all it was allowed to: rows older than its last may still
/// belong on the page.
struct Cut {
    did: String,
    /// The compact key of the last repost read; none for posts.
    repost: Option<(i32, i64)>,
    /// The record key of the last row read.
    rkey: String,
}

/// Rows each account gives at least in the first read of [`newest_rows`].
const FIRST_SHARE: i64 = 3;

/// The newest rows of `authors` (a query yielding `did` and, for reposts,
/// its `dids` id `id`, over the statement's `own` parameters), each
/// account's posts and, with `with_reposts`, reposts, read from the
/// indexes alone (no row is rendered before the page is chosen); newest
/// first by `(rkey, uri)` as every listing, and whether more follow.
///
/// A page of `limit` rows from `n` accounts takes about `limit / n` from
/// each, so each account first gives only a share of the page (twice its
/// even share, at least [`FIRST_SHARE`]). An account that gave all it was
/// allowed to and whose last row is newer than the page's last may hold
/// more of the page: those accounts alone are read again below their last
/// row, a page's worth each. The page is then exact, and the rows read
/// are a few an account rather than a page an account.
async fn newest_rows(
    client: &Db,
    page: &Keyset,
    authors: &str,
    own: &[&(dyn ToSql + Sync)],
    with_reposts: bool,
) -> XrpcResult<(Vec<Candidate>, bool)> {
    let (want, most, key) = (own.len() + 1, own.len() + 2, own.len() + 3);
    // The bound is inclusive: the cursor's own row is dropped below, so
    // each account gives one row more than a page needs.
    let (posts_until, key_param) = match page.cursor {
        Some(_) => (format!("AND p.rkey <= ${key}"), Some(key)),
        None => (format!("AND ${key}::text IS NULL"), None),
    };
    let posts = format!(
        "SELECT a.did, x.rkey, NULL::int4 AS actor, NULL::int8 AS rkey_id, s.per \
         FROM share s, authors a CROSS JOIN LATERAL ( \
           SELECT p.rkey FROM posts p WHERE p.did = a.did {posts_until} \
           ORDER BY p.rkey DESC LIMIT s.per) x"
    );
    let reposts = format!(
        "SELECT a.did, x.name, x.actor, x.rkey_id, s.per \
         FROM share s, authors a CROSS JOIN LATERAL ( \
           SELECT r.actor, r.rkey_id, CASE WHEN r.rkey_id < 0 THEN r.rkey END AS name \
           FROM {LIVE_REPOST_KEYS} r WHERE {range} AND r.has_subject \
           ORDER BY r.rkey_id DESC LIMIT s.per) x",
        range = until_cursor("r.actor = a.id".to_owned(), "r", key_param),
    );
    // Accounts do not post evenly: twice the even share, never more than
    // the page.
    let share = format!(
        "share AS (SELECT LEAST(${most}::int8, GREATEST({FIRST_SHARE}, \
           ceil(2.0 * ${want}::int8 / GREATEST(count(*), 1))::int8)) AS per FROM authors)"
    );
    let sql = if with_reposts {
        format!("WITH authors AS MATERIALIZED ({authors}), {share} {posts} UNION ALL {reposts}")
    } else {
        format!("WITH authors AS MATERIALIZED ({authors}), {share} {posts}")
    };
    let (cursor_key, _) = page.cursor_params();
    // One row more than the page tells whether another follows; one more
    // again stands for the cursor's own row, which the bound keeps.
    let (wanted, per_account) = (page.limit + 1, page.limit + 2);
    let mut params = own.to_vec();
    params.extend([&wanted as &(dyn ToSql + Sync), &per_account, &cursor_key]);
    let stmt = client.prepare_cached(&sql).await?;
    let mut rows = Vec::new();
    // Per account and kind: the rows read, the share, and the oldest row.
    let mut streams: HashMap<(String, bool), (i64, i64, usize)> = HashMap::new();
    for row in client.query(&stmt, &params).await? {
        let candidate = Candidate::read(&row)?;
        let (did, repost) = candidate.stream();
        let at = rows.len();
        let stream = streams
            .entry((did.to_owned(), repost))
            .or_insert((0, row.col("per")?, at));
        stream.0 += 1;
        if rows.get(stream.2).is_some_and(|o| candidate.older_than(o)) {
            stream.2 = at;
        }
        rows.push(candidate);
    }
    let cuts: Vec<Cut> = streams
        .into_values()
        .filter(|(read, per, _)| read >= per)
        .filter_map(|(_, _, oldest)| rows.get(oldest))
        .map(|c| Cut {
            did: c.stream().0.to_owned(),
            repost: c.repost.as_ref().map(|(_, actor, rkey)| (*actor, *rkey)),
            rkey: c.rkey.clone(),
        })
        .collect();
    let limit = usize::try_from(page.limit).unwrap_or(0);
    let mut rows = newest(rows, page, limit + 1);
    // The page's last row so far (with the one that tells whether more
    // follow): an account cut above it may hold rows that come before it;
    // short of that, every cut account may.
    let last = (rows.len() > limit)
        .then(|| rows.last().map(|c| c.rkey.clone()))
        .flatten();
    let again: Vec<&Cut> = cuts
        .iter()
        .filter(|cut| last.as_ref().is_none_or(|last| cut.rkey >= *last))
        .collect();
    if !again.is_empty() {
        rows.extend(read_below(client, &again, page.limit + 1).await?);
        rows = newest(rows, page, limit + 1);
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

/// `rows` past the page's cursor, newest first, at most `keep`.
fn newest(mut rows: Vec<Candidate>, page: &Keyset, keep: usize) -> Vec<Candidate> {
    if let Some(cursor) = &page.cursor {
        rows.retain(|c| {
            (c.rkey.as_str(), c.uri.as_str()) < (cursor.key.as_str(), cursor.uri.as_str())
        });
    }
    rows.sort_unstable_by(|a, b| (&b.rkey, &b.uri).cmp(&(&a.rkey, &a.uri)));
    rows.truncate(keep);
    rows
}

/// The rows of each cut account (and kind) below where its first read
/// stopped, at most `per` each.
async fn read_below(client: &Db, cuts: &[&Cut], per: i64) -> XrpcResult<Vec<Candidate>> {
    // One statement whether or not reposts are read (an empty array reads
    // none): a statement must name every parameter it is given.
    static BELOW: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT x.did, p.rkey, NULL::int4 AS actor, NULL::int8 AS rkey_id \
             FROM unnest($1::text[], $2::text[]) AS x(did, until) CROSS JOIN LATERAL ( \
               SELECT p.rkey FROM posts p WHERE p.did = x.did AND p.rkey < x.until \
               ORDER BY p.rkey DESC LIMIT $5) p \
             UNION ALL \
             SELECT d.did, r.name, r.actor, r.rkey_id \
             FROM unnest($3::int4[], $4::int8[]) AS y(actor, until) \
             JOIN dids d ON d.id = y.actor CROSS JOIN LATERAL ( \
               SELECT r.actor, r.rkey_id, CASE WHEN r.rkey_id < 0 THEN r.rkey END AS name \
               FROM {LIVE_REPOST_KEYS} r \
               WHERE r.actor = y.actor AND r.rkey_id < y.until AND r.has_subject \
               ORDER BY r.rkey_id DESC LIMIT $5) r"
        )
    });
    let (mut dids, mut until, mut actors, mut keys) = (vec![], vec![], vec![], vec![]);
    for cut in cuts {
        match cut.repost {
            None => {
                dids.push(cut.did.as_str());
                until.push(cut.rkey.as_str());
            }
            Some((actor, rkey)) => {
                actors.push(actor);
                keys.push(rkey);
            }
        }
    }
    let stmt = client.prepare_cached(&BELOW).await?;
    let params: [&(dyn ToSql + Sync); 5] = [&dids, &until, &actors, &keys, &per];
    client
        .query(&stmt, &params)
        .await?
        .iter()
        .map(Candidate::read)
        .collect()
}

/// The feed items of a page of candidates: posts as they are, reposts with
/// what their rows say (subject, CID, indexing time), read for the page's
/// reposts only. A repost gone since the page was chosen is left out.
async fn feed_items(client: &Db, rows: &[Candidate]) -> XrpcResult<Vec<FeedItem>> {
    let (actors, keys): (Vec<i32>, Vec<i64>) = rows
        .iter()
        .filter_map(|c| c.repost.as_ref().map(|(_, actor, rkey)| (*actor, *rkey)))
        .unzip();
    let mut reposts = HashMap::new();
    if !actors.is_empty() {
        let stmt = client
            .prepare_cached(&format!(
                "SELECT k.actor, k.rkey AS rkey_id, r.subject_uri, r.record, r.stored_cid, \
                        r.indexed_at \
                 FROM unnest($1::int4[], $2::int8[]) AS k(actor, rkey) \
                 CROSS JOIN LATERAL {shown} r",
                shown = shown_repost("k.actor", "k.rkey"),
            ))
            .await?;
        for row in client.query(&stmt, &[&actors, &keys]).await? {
            let key: (i32, i64) = (row.col("actor")?, row.col("rkey_id")?);
            let record: Option<String> = row.col("record")?;
            let value: (Option<String>, String, String) = (
                row.col("subject_uri")?,
                row_cid(row.col("stored_cid")?, record.as_deref()).unwrap_or_default(),
                datetime_millis(row.col("indexed_at")?),
            );
            reposts.insert(key, value);
        }
    }
    let mut items = Vec::with_capacity(rows.len());
    for c in rows {
        match &c.repost {
            None => items.push(FeedItem {
                post_uri: c.uri.clone(),
                reason: None,
            }),
            Some((by, actor, rkey)) => {
                if let Some((Some(subject), cid, at)) = reposts.remove(&(*actor, *rkey)) {
                    items.push(FeedItem {
                        post_uri: subject,
                        reason: Some(Reason::Repost {
                            by: by.clone(),
                            uri: c.uri.clone(),
                            cid,
                            indexed_at: at,
                        }),
                    });
                }
            }
        }
    }
    Ok(items)
}

/// The page of `authors`' newest rows, hydrated. `drop_muted`: leave out
/// what the viewer's mutes hide (the timeline). What the viewer's blocks
/// hide is left out of both feeds.
async fn render_feed(
    ctx: &Ctx<'_>,
    client: &Db,
    page: &Keyset,
    authors: &str,
    own: &[&(dyn ToSql + Sync)],
    with_reposts: bool,
) -> XrpcResult<Listing> {
    let (rows, more) = newest_rows(client, page, authors, own, with_reposts).await?;
    let next = match rows.last() {
        Some(last) if more => Some(Cursor::new(last.rkey.clone(), last.uri.clone()).encode()),
        _ => None,
    };
    let mut items = feed_items(client, &rows).await?;
    let hydrated = Hydrator::new(client, ctx.config(), ctx.viewer())
        .hydrate_feed(&items)
        .await?;
    items.retain(|item| {
        let muted = with_reposts && hydrated.feed_item_muted(item);
        !muted && !hydrated.feed_item_blocked(item)
    });
    Listing::serialize(&hydrated.feed_page(&items, next), "feed", page.limit)
}

/// Posts and reposts of the accounts the viewer follows, and the viewer's
/// own, less what the viewer's mutes hide. Fully muted accounts and
/// accounts that are not served are left out of the page's authors, so
/// their rows do not take a page's room.
pub async fn get_timeline(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    // Any algorithm name gets the reverse-chronological following timeline.
    let _ = ctx.params.get("algorithm");
    let page = Keyset::parse(ctx)?;
    let viewer = ctx.require_viewer()?.to_owned();
    let client = ctx.db().await?;
    static AUTHORS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT $1::text AS did, {viewer} AS id \
             UNION SELECT s.did, s.id FROM follow_rows f JOIN dids s ON s.id = f.subject_actor \
             {served} \
             WHERE f.actor = {viewer} AND f.live \
             AND NOT EXISTS (SELECT 1 FROM private_actor_mutes m WHERE m.did = $1 \
               AND m.subject_did = s.did AND NOT m.only_reposts AND NOT m.only_quoteposts)",
            // A timeline following mostly accounts not served would read
            // ten pages for each answer and could still answer with none.
            served = served_actor("served", "s.did"),
            viewer = did_id("$1"),
        )
    });
    render_feed(ctx, &client, &page, &AUTHORS, &[&viewer], true).await
}

/// Posts by the list's members, leaving out members who block or are blocked
/// by the list's creator, as the reference AppView does, and members that
/// are not served.
pub async fn get_list_feed(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
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
    static MEMBERS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT DISTINCT li.subject_did AS did, NULL::int4 AS id FROM list_items li {served} \
             WHERE li.list_uri = $1 \
             AND NOT EXISTS (SELECT 1 FROM blocks b WHERE \
               (b.did = $2 AND b.subject_did = li.subject_did) OR (b.did = li.subject_did AND b.subject_did = $2))",
            served = served_actor("served", "li.subject_did"),
        )
    });
    render_feed(ctx, &client, &page, &MEMBERS, &[&list, &creator], false).await
}
