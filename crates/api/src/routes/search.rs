//! Search over the index with PostgreSQL full text: posts
//! (app.bsky.feed.searchPosts) and actors (app.bsky.actor.searchActors,
//! searchActorsTypeahead).
//!
//! Text is matched against the `simple` configuration (no stemming, no stop
//! words: posts come in every language), through the GIN indexes of
//! migration 0003; the expressions here must stay identical to theirs.

use axum::response::Response;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;

use crate::cursor::Cursor;
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::params::{datetime_micros, ActorRef};
use crate::routes::fill::Listing;
use crate::routes::keyset::with_cursor;
use crate::routes::{json, Ctx};
use crate::views::actor::{resolve_actor, served_actor};
use crate::views::feed_view::{PostView, PostsPage};
use crate::views::{Db, Hydrator};

/// Runs a search statement with a plan made for its actual values. The pool's
/// sessions reuse generic plans (see `db`), but full-text queries and prefix
/// patterns only reach their indexes when the planner sees the values, so
/// these statements run in a transaction that asks for a custom plan.
async fn query_custom_plan(
    client: &mut deadpool_postgres::Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
        .await?;
    let stmt = tx.prepare_cached(sql).await?;
    let rows = tx.query(&stmt, params).await?;
    tx.commit().await?;
    Ok(rows)
}

/// A WHERE clause built from optional filters, with its numbered parameters.
#[derive(Default)]
struct Filters {
    clauses: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filters {
    /// The placeholder of a new parameter.
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn add(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A search query split into free text and the `key:value` operators the
/// official app writes into it (`from:alice.bsky.social`, `lang:en`, ...).
#[derive(Debug, Default, PartialEq)]
struct Query {
    text: String,
    from: Option<String>,
    mentions: Option<String>,
    lang: Option<String>,
    since: Option<String>,
    until: Option<String>,
    domain: Option<String>,
}

impl Query {
    fn parse(q: &str) -> Query {
        let mut out = Query::default();
        let mut text: Vec<&str> = Vec::new();
        let mut in_quotes = false;
        for word in q.split_whitespace() {
            // Operators inside a quoted phrase are words of the phrase.
            let quote_count = word.matches('"').count();
            if !in_quotes {
                if let Some((key, value)) = word.split_once(':') {
                    let value = value.trim_start_matches('@');
                    let slot = match key {
                        "from" => Some(&mut out.from),
                        "mentions" => Some(&mut out.mentions),
                        "lang" => Some(&mut out.lang),
                        "since" => Some(&mut out.since),
                        "until" => Some(&mut out.until),
                        "domain" => Some(&mut out.domain),
                        _ => None,
                    };
                    if let Some(slot) = slot.filter(|_| !value.is_empty()) {
                        *slot = Some(value.to_owned());
                        continue;
                    }
                }
            }
            if quote_count % 2 == 1 {
                in_quotes = !in_quotes;
            }
            text.push(word);
        }
        out.text = text.join(" ");
        out
    }
}

/// A DID from an actor parameter or operator value; `me` is the viewer.
/// None when nobody by that name is indexed: then nothing can match.
async fn actor_did(
    client: &Db,
    ctx: &Ctx<'_>,
    name: &str,
    value: &str,
) -> XrpcResult<Option<String>> {
    if value == "me" {
        return Ok(ctx.viewer().map(str::to_owned));
    }
    let actor = if value.starts_with("did:") {
        skyhose_proto::syntax::validate_did(value).map_err(|e| XrpcError::bad_param(name, e))?;
        ActorRef::Did(value.to_owned())
    } else {
        skyhose_proto::syntax::validate_handle(value).map_err(|e| XrpcError::bad_param(name, e))?;
        ActorRef::Handle(value.to_ascii_lowercase())
    };
    Ok(resolve_actor(client, &actor).await?.map(|(did, _)| did))
}

/// The hostname of an `http(s)` URL, lowercased, in SQL.
const URL_HOST: &str = "lower(substring({} from '^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]+)'))";

fn host_of(expr: &str) -> String {
    URL_HOST.replace("{}", expr)
}

const SEARCH_SORTS: &[&str] = &["top", "latest"];
/// `sort=top` ranks the newest this many matches: a common word matches a
/// large part of the network, and ranking all of it would take seconds.
const TOP_WINDOW: i64 = 5000;
/// Likes, reposts and replies: what `sort=top` ranks by before recency.
const ENGAGEMENT: &str = "(COALESCE(c.likes, 0) + COALESCE(c.reposts, 0) + COALESCE(c.replies, 0))";

pub async fn search_posts(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let q = ctx.params.required("q")?;
    let sort = ctx.params.one_of("sort", SEARCH_SORTS, "latest")?;
    let limit = ctx.params.limit(1, 100, 25)?;
    let cursor = ctx.params.cursor()?;
    let query = Query::parse(q);
    let top_cursor = match (&cursor, sort) {
        (Some(c), "top") => Some(parse_top_cursor(c)?),
        _ => None,
    };

    // Parameters win over the same operator written in `q`.
    let param_or = |name: &str, op: &Option<String>| -> Option<String> {
        ctx.params
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .or_else(|| op.clone())
    };
    let author = param_or("author", &query.from);
    let mentions = param_or("mentions", &query.mentions);
    let lang = param_or("lang", &query.lang);
    if let Some(lang) = &lang {
        skyhose_proto::syntax::validate_language(lang)
            .map_err(|e| XrpcError::bad_param("lang", e))?;
    }
    let since = time_bound(ctx, "since", &query.since)?;
    let until = time_bound(ctx, "until", &query.until)?;
    let domain = param_or("domain", &query.domain)
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty());
    if domain.as_ref().is_some_and(|d| d.len() > 253) {
        return Err(XrpcError::bad_param("domain", "not a hostname"));
    }
    let url = ctx.params.get("url").filter(|v| !v.is_empty());
    if let Some(url) = url {
        skyhose_proto::syntax::validate_uri(url).map_err(|e| XrpcError::bad_param("url", e))?;
    }
    let tags: Vec<String> = ctx
        .params
        .strings("tag", 20, 640)?
        .into_iter()
        .map(|t| t.trim_start_matches('#').to_owned())
        .filter(|t| !t.is_empty())
        .collect();

    let mut client = ctx.db().await?;
    let mut f = Filters::default();
    // `*` (or any text without a letter or digit) matches everything.
    let has_text = query.text.chars().any(char::is_alphanumeric);
    if has_text {
        let p = f.bind(query.text.clone());
        f.add(format!(
            "to_tsvector('simple', COALESCE(p.text, '')) @@ websearch_to_tsquery('simple', {p})"
        ));
    }
    let mut filtered = false;
    if let Some(author) = &author {
        let Some(did) = actor_did(&client, ctx, "author", author).await? else {
            return Listing::serialize(&json!({"posts": []}), "posts", limit);
        };
        let p = f.bind(did);
        f.add(format!("p.did = {p}"));
        filtered = true;
    }
    if let Some(mentions) = &mentions {
        let Some(did) = actor_did(&client, ctx, "mentions", mentions).await? else {
            return Listing::serialize(&json!({"posts": []}), "posts", limit);
        };
        let p = f.bind(json!([{"features": [{"did": did}]}]));
        f.add(format!("p.facets @> {p}::jsonb"));
        filtered = true;
    }
    if let Some(lang) = lang {
        let p = f.bind(json!([lang]));
        f.add(format!("p.langs @> {p}::jsonb"));
        filtered = true;
    }
    // Posts are keyed by TIDs, whose order is their creation time.
    if let Some(since) = since {
        let p = f.bind(skyhose_proto::tid::Tid::new(since, 0).to_string());
        f.add(format!("p.rkey >= {p}"));
    }
    if let Some(until) = until {
        let p = f.bind(skyhose_proto::tid::Tid::new(until, 0).to_string());
        f.add(format!("p.rkey < {p}"));
    }
    for tag in tags {
        let in_tags = f.bind(json!([tag]));
        let in_facets = f.bind(json!([{"features": [{"tag": tag}]}]));
        f.add(format!(
            "(p.tags @> {in_tags}::jsonb OR p.facets @> {in_facets}::jsonb)"
        ));
        filtered = true;
    }
    if let Some(domain) = domain {
        let bare = f.bind(domain.clone());
        let www = f.bind(format!("www.{domain}"));
        f.add(format!(
            "({ext} IN ({bare}, {www}) OR EXISTS (SELECT 1 FROM \
               jsonb_path_query(p.facets, 'lax $[*].features[*].uri') AS u(uri) \
               WHERE {facet} IN ({bare}, {www})))",
            ext = host_of("p.embed_external_uri"),
            facet = host_of("(u.uri #>> '{}')"),
        ));
        filtered = true;
    }
    if let Some(url) = url {
        let exact = f.bind(url.to_owned());
        let in_facets = f.bind(json!([{"features": [{"uri": url}]}]));
        f.add(format!(
            "(p.embed_external_uri = {exact} OR p.facets @> {in_facets}::jsonb)"
        ));
        filtered = true;
    }
    if !has_text && !filtered {
        // Nothing to search for: a time range alone is not a search.
        return Listing::serialize(&json!({"posts": []}), "posts", limit);
    }

    let sql = if sort == "top" {
        // The position is on the engagement, known only once the counts are
        // joined, so it filters the window rather than the posts.
        let after = match top_cursor {
            Some((score, key, uri)) => {
                let (s, k, u) = (f.bind(score), f.bind(key), f.bind(uri));
                format!("WHERE ({ENGAGEMENT}, p.rkey, p.uri) < ({s}, {k}, {u})")
            }
            None => String::new(),
        };
        let l = f.bind(limit);
        let window = f.bind(TOP_WINDOW);
        format!(
            "SELECT p.uri, p.rkey, {ENGAGEMENT} AS score FROM ( \
               SELECT p.uri, p.rkey, p.actor, p.rkey_id FROM posts p {served} WHERE {w} \
               ORDER BY p.rkey DESC, p.uri DESC LIMIT {window}) p \
             LEFT JOIN LATERAL counts_of(p.actor, 'app.bsky.feed.post', p.rkey_id) c ON true {after} \
             ORDER BY 3 DESC, p.rkey DESC, p.uri DESC LIMIT {l}",
            served = served_actor("a", "p.did"),
            w = f.sql()
        )
    } else {
        if let Some(c) = &cursor {
            let (k, u) = (f.bind(c.key.clone()), f.bind(c.uri.clone()));
            f.add(format!("(p.rkey, p.uri) < ({k}, {u})"));
        }
        let l = f.bind(limit);
        format!(
            "SELECT p.uri, p.rkey, 0::int8 AS score FROM posts p {served} WHERE {w} \
             ORDER BY p.rkey DESC, p.uri DESC LIMIT {l}",
            served = served_actor("a", "p.did"),
            w = f.sql()
        )
    };
    let rows = query_custom_plan(&mut client, &sql, &f.refs()).await?;

    let uris = rows
        .iter()
        .map(|r| r.col("uri"))
        .collect::<XrpcResult<Vec<String>>>()?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&uris, &[])
        .await?;
    let posts: Vec<PostView<'_>> = uris
        .iter()
        .filter(|uri| {
            hydrated
                .posts
                .get(*uri)
                .is_some_and(|p| !hydrated.blocked(&p.did))
        })
        .filter_map(|uri| hydrated.post_view_raw(uri))
        .collect();
    let next = match rows.last() {
        Some(row) if rows.len() as i64 >= limit => {
            let (uri, rkey, score): (String, String, i64) =
                (row.col("uri")?, row.col("rkey")?, row.col("score")?);
            let key = if sort == "top" {
                format!("{score}:{rkey}")
            } else {
                rkey
            };
            Some(Cursor::new(key, uri).encode())
        }
        _ => None,
    };
    Listing::serialize(
        &PostsPage {
            posts,
            cursor: next,
        },
        "posts",
        limit,
    )
}

/// `since`/`until` from the parameter, else from the operator in `q`.
fn time_bound(ctx: &Ctx<'_>, name: &str, op: &Option<String>) -> XrpcResult<Option<i64>> {
    if let Some(t) = ctx.params.optional_timestamp(name)? {
        return Ok(Some(t));
    }
    op.as_deref()
        .map(|value| {
            datetime_micros(value).ok_or_else(|| {
                XrpcError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "BadQueryString",
                    format!("q: {name}:{value} is not a datetime or YYYY-MM-DD date"),
                )
            })
        })
        .transpose()
}

/// A `sort=top` cursor: `score:rkey` and the URI.
fn parse_top_cursor(c: &Cursor) -> XrpcResult<(i64, String, String)> {
    let bad = || XrpcError::bad_param("cursor", "not a cursor this service issued");
    let (score, rkey) = c.key.split_once(':').ok_or_else(bad)?;
    let score = score.parse::<i64>().map_err(|_| bad())?;
    Ok((score, rkey.to_owned(), c.uri.clone()))
}

/// How well an actor matches: an exact handle, a handle prefix, a display
/// name prefix, then words of the display name or description.
const ACTOR_RANK: &str = "\
CASE WHEN a.handle = $1 THEN 0 \
     WHEN a.handle ~>=~ $1 AND a.handle ~<~ $2 THEN 1 \
     WHEN lower(a.display_name) ~>=~ $3 AND lower(a.display_name) ~<~ $4 THEN 2 \
     ELSE 3 END";

/// Each way of matching contributes at most this many candidates, so a one
/// letter query costs a bounded amount of work.
const CANDIDATES: i64 = 2000;

/// `$1..$4`: handle prefix and its upper bound, display-name prefix and its
/// upper bound; `$5` the tsquery, built by `tsquery_fn`; `$6` the cap.
fn actor_candidates(tsquery_fn: &str) -> String {
    format!(
        "WITH candidates AS ( \
           (SELECT a.did FROM actors a WHERE a.indexed AND a.handle ~>=~ $1 AND a.handle ~<~ $2 LIMIT $6) \
           UNION (SELECT p.did FROM profiles p \
                  WHERE lower(p.display_name) ~>=~ $3 AND lower(p.display_name) ~<~ $4 LIMIT $6) \
           UNION (SELECT p.did FROM profiles p \
                  WHERE to_tsvector('simple', COALESCE(display_name, '') || ' ' || COALESCE(description, '')) \
                        @@ {tsquery_fn}('simple', $5) LIMIT $6)), \
         ranked AS ( \
           SELECT a.did, ({ACTOR_RANK})::int4 AS rank FROM candidates c {served}) ",
        served = served_actor("a", "c.did"),
    )
}

/// The search term from `q`, or the deprecated `term`; a leading `@` is the
/// handle's, not part of it.
fn actor_term(ctx: &Ctx<'_>) -> String {
    let q = ctx
        .params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .or_else(|| ctx.params.get("term"))
        .unwrap_or("");
    q.trim().trim_start_matches('@').to_owned()
}

/// The first four parameters of [`actor_candidates`]: prefixes and bounds.
fn prefix_params(term: &str) -> [String; 4] {
    // Past every character a name can continue with.
    const TOP: char = '\u{10FFFF}';
    let handle = term.to_ascii_lowercase();
    let name = term.to_lowercase();
    [
        handle.clone(),
        format!("{handle}{TOP}"),
        name.clone(),
        format!("{name}{TOP}"),
    ]
}

pub async fn search_actors(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let limit = ctx.params.limit(1, 100, 25)?;
    let cursor = match ctx.params.cursor()? {
        Some(c) => Some((
            c.key
                .parse::<i32>()
                .map_err(|_| XrpcError::bad_param("cursor", "not a cursor this service issued"))?,
            c.uri,
        )),
        None => None,
    };
    let term = actor_term(ctx);
    if term.is_empty() {
        return Listing::serialize(&json!({"actors": []}), "actors", limit);
    }
    let mut client = ctx.db().await?;
    let [h, h_top, n, n_top] = prefix_params(&term);
    let (after_rank, after_did) = cursor.unzip();
    let sql = format!(
        "{} SELECT did, rank FROM ranked \
         WHERE $7::int4 IS NULL OR (rank, did) > ($7, $8) ORDER BY rank, did LIMIT $9",
        actor_candidates("plainto_tsquery")
    );
    let rows = query_custom_plan(
        &mut client,
        &sql,
        &[
            &h,
            &h_top,
            &n,
            &n_top,
            &term,
            &CANDIDATES,
            &after_rank,
            &after_did,
            &limit,
        ],
    )
    .await?;
    let dids = rows
        .iter()
        .map(|r| r.col("did"))
        .collect::<XrpcResult<Vec<String>>>()?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let actors: Vec<Value> = dids
        .iter()
        .filter(|did| !hydrated.blocked(did))
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    let next = match rows.last() {
        Some(row) if rows.len() as i64 >= limit => Some(
            Cursor::new(
                row.col::<i32>("rank")?.to_string(),
                row.col::<String>("did")?,
            )
            .encode(),
        ),
        _ => None,
    };
    Listing::serialize(
        &with_cursor(json!({ "actors": actors }), next),
        "actors",
        limit,
    )
}

/// Every word of `term` as a prefix (`word:*`), all required; only letters
/// and digits are kept, so the result is always valid tsquery syntax.
fn prefix_tsquery(term: &str) -> Option<String> {
    let words: Vec<String> = term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(10)
        .map(|w| format!("{}:*", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

pub async fn search_actors_typeahead(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let limit = ctx.params.limit(1, 100, 10)?;
    let term = actor_term(ctx);
    if term.is_empty() {
        return json(&json!({"actors": []}));
    }
    let mut client = ctx.db().await?;
    let [h, h_top, n, n_top] = prefix_params(&term);
    let words = prefix_tsquery(&term);
    let sql = format!(
        "{} SELECT did, rank FROM ranked ORDER BY rank, did LIMIT $7",
        actor_candidates("to_tsquery")
    );
    let rows = query_custom_plan(
        &mut client,
        &sql,
        &[&h, &h_top, &n, &n_top, &words, &CANDIDATES, &limit],
    )
    .await?;
    let dids = rows
        .iter()
        .map(|r| r.col("did"))
        .collect::<XrpcResult<Vec<String>>>()?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let actors: Vec<Value> = dids
        .iter()
        .filter(|did| !hydrated.blocked(did))
        .filter_map(|did| hydrated.profile_basic(did))
        .collect();
    json(&json!({ "actors": actors }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_come_out_of_the_query() {
        let q =
            Query::parse("garden from:@alice.test lang:en \"from:x harbor\" since:2024-11-01 sky");
        assert_eq!(q.text, "garden \"from:x harbor\" sky");
        assert_eq!(q.from.as_deref(), Some("alice.test"));
        assert_eq!(q.lang.as_deref(), Some("en"));
        assert_eq!(q.since.as_deref(), Some("2024-11-01"));
        assert_eq!(Query::parse("http://x.test").text, "http://x.test");
    }

    #[test]
    fn prefix_queries_are_plain_words() {
        assert_eq!(prefix_tsquery("Judy 26"), Some("judy:* & 26:*".into()));
        assert_eq!(prefix_tsquery("a'b & !c:*"), Some("a:* & b:* & c:*".into()));
        assert_eq!(prefix_tsquery("&|!"), None);
    }
}
