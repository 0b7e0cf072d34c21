//! app.bsky.feed.getFeed: a custom feed. The generator record (indexed)
//! names the DID of the service serving the feed; its DID document names
//! the `#bsky_fg` endpoint, which is asked for `getFeedSkeleton` with the
//! caller's own token, and the skeleton's posts are hydrated in its order.
//! Posts that cannot be shown (unknown, deleted, by unserved or blocked
//! accounts) and what the viewer's mutes hide are left out; the
//! generator's cursor is kept. A generator that
//! does not answer in time, or answers something other than a skeleton, is
//! a 502 under the official AppView's names, counted in
//! `skyhose_api_feed_failures_total{reason}`.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use skyhose_identity::{FetchError, ResolveError};

use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::{auth_refused, json, Ctx};
use crate::views::feedgen::load_generators;
use crate::views::hydrate::{FeedItem, Reason};
use crate::views::{datetime_millis, Hydrator};
use crate::AppState;

pub const FEED_FAILURES: &str = "skyhose_api_feed_failures_total";

/// A skeleton of 100 items is a few KiB; this leaves generators room for
/// long feed contexts without letting one stream us megabytes.
const MAX_SKELETON_BYTES: usize = 1024 * 1024;

const SKELETON_REASON_REPOST: &str = "app.bsky.feed.defs#skeletonReasonRepost";
const SKELETON_REASON_PIN: &str = "app.bsky.feed.defs#skeletonReasonPin";

fn failure(reason: &'static str) {
    metrics::counter!(FEED_FAILURES, "reason" => reason).increment(1);
}

/// The `#bsky_fg` endpoint in `did`'s document, as the official AppView
/// looks it up (for `getFeed` and `getFeedGenerator` alike).
pub async fn feed_endpoint(state: &AppState, did: &str) -> XrpcResult<String> {
    let resolved = match state.resolver.resolve_did(did).await {
        Ok(resolved) => resolved,
        Err(err) => {
            failure("identity");
            tracing::info!(did, error = %err, "feed generator identity not resolved");
            return Err(unresolved(did, &err));
        }
    };
    resolved
        .document
        .services
        .get("bsky_fg")
        .filter(|s| s.kind == "BskyFeedGenerator")
        .map(|s| s.endpoint.trim_end_matches('/').to_owned())
        .ok_or_else(|| {
            failure("no_endpoint");
            XrpcError::invalid_request(format!(
                "invalid feed generator service details in did document: {did}"
            ))
        })
}

/// A DID that definitely does not resolve is the request's fault; one
/// whose directory or host is failing is the upstream's.
fn unresolved(did: &str, err: &ResolveError) -> XrpcError {
    if err.is_transient() {
        upstream_failure()
    } else {
        XrpcError::invalid_request(format!("could not resolve identity: {did}"))
    }
}

fn upstream_failure() -> XrpcError {
    XrpcError::new(
        StatusCode::BAD_GATEWAY,
        "UpstreamFailure",
        "feed unavailable",
    )
}

fn invalid_response() -> XrpcError {
    failure("invalid_response");
    XrpcError::new(
        StatusCode::BAD_GATEWAY,
        "InvalidFeedResponse",
        "feed provided an invalid response",
    )
}

#[derive(Deserialize)]
struct Skeleton {
    feed: Vec<SkeletonItem>,
    cursor: Option<String>,
    #[serde(rename = "reqId")]
    req_id: Option<String>,
}

#[derive(Deserialize)]
struct SkeletonItem {
    post: String,
    reason: Option<Value>,
    #[serde(rename = "feedContext")]
    feed_context: Option<String>,
}

pub async fn get_feed(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let feed = ctx.params.at_uri("feed")?;
    let limit = ctx.params.limit(1, 100, 50)?;
    let cursor = ctx.params.get("cursor").filter(|c| !c.is_empty());
    let client = ctx.db().await?;

    let generator = load_generators(&client, std::slice::from_ref(&feed), None)
        .await?
        .remove(&feed);
    let Some(service_did) = generator
        .and_then(|g| g.service_did)
        .filter(|d| skyhose_proto::syntax::is_did(d))
    else {
        failure("unknown_feed");
        return Err(XrpcError::invalid_request("could not find feed"));
    };
    let viewer = match ctx.authorization {
        Some(value) => Some(
            ctx.state
                .auth
                .verify_feed(value, &service_did)
                .await
                .map_err(|err| auth_refused(ctx.nsid, err))?,
        ),
        None => None,
    };
    let endpoint = feed_endpoint(ctx.state, &service_did).await?;

    let mut url = format!(
        "{endpoint}/xrpc/app.bsky.feed.getFeedSkeleton?feed={}&limit={limit}",
        encode(&feed)
    );
    if let Some(cursor) = cursor {
        url.push_str("&cursor=");
        url.push_str(&encode(cursor));
    }
    let body = ctx
        .state
        .feed_client
        .get_xrpc(&url, ctx.authorization, MAX_SKELETON_BYTES)
        .await
        .map_err(|err| {
            failure(match &err {
                FetchError::Timeout(_) => "timeout",
                FetchError::Status(_) => "http_status",
                FetchError::TooLarge(_) => "too_large",
                FetchError::Refused(_) => "refused",
                _ => "unreachable",
            });
            tracing::info!(%service_did, error = %err, "feed generator failed");
            upstream_failure()
        })?;
    let skeleton: Skeleton = serde_json::from_slice(&body).map_err(|err| {
        tracing::info!(%service_did, error = %err, "feed generator answered no skeleton");
        invalid_response()
    })?;
    let next = skeleton
        .cursor
        .filter(|c| !skeleton.feed.is_empty() && Some(c.as_str()) != cursor);

    let mut entries: Vec<Entry> = Vec::new();
    for item in skeleton.feed.into_iter().take(limit as usize) {
        if skyhose_proto::syntax::parse_at_uri(&item.post).is_none() {
            failure("bad_item");
            tracing::info!(%service_did, post = %item.post.chars().take(300).collect::<String>(),
                "feed generator listed something that is not an AT-URI; left out");
            continue;
        }
        let reason = item.reason.as_ref();
        let field = |name: &str| reason.and_then(|r| r.get(name)).and_then(Value::as_str);
        let reason = match field("$type") {
            Some(SKELETON_REASON_PIN) => Some(SkeletonReason::Pin),
            Some(SKELETON_REASON_REPOST) => {
                field("repost").map(|uri| SkeletonReason::Repost(uri.to_owned()))
            }
            _ => None,
        };
        entries.push(Entry {
            post: item.post,
            reason,
            context: item.feed_context,
        });
    }
    let items = feed_items(&client, entries).await?;

    let feed_items: Vec<FeedItem> = items.iter().map(|(i, _)| i.clone()).collect();
    let hydrated = Hydrator::new(&client, ctx.config(), viewer.as_deref())
        .hydrate_feed(&feed_items)
        .await?;
    let mut feed = Vec::with_capacity(items.len());
    for (item, context) in &items {
        // What the viewer's mutes and blocks hide is left out, as from the
        // timeline.
        if hydrated.feed_item_muted(item) || hydrated.feed_item_blocked(item) {
            continue;
        }
        let Some(view) = hydrated.feed_view_post(item) else {
            continue;
        };
        let mut view = serde_json::to_value(&view).map_err(|e| {
            tracing::error!(error = %e, "serialising a feed item");
            XrpcError::internal()
        })?;
        if let Some(context) = context {
            view["feedContext"] = json!(context);
        }
        if let Some(req_id) = &skeleton.req_id {
            view["reqId"] = json!(req_id);
        }
        feed.push(view);
    }
    let mut out = json!({ "feed": feed });
    if let Some(next) = next {
        out["cursor"] = json!(next);
    }
    json(&out)
}

/// A skeleton item that names a post.
struct Entry {
    post: String,
    reason: Option<SkeletonReason>,
    context: Option<String>,
}

enum SkeletonReason {
    Pin,
    /// The URI of the repost record.
    Repost(String),
}

/// The feed items of `entries`, each with its feed context. A repost
/// reason is completed from the index (who reposted, the record's CID and
/// time); a repost that is not indexed, or reposts another post than the
/// item's, shows the post without a reason.
async fn feed_items(
    client: &crate::views::Db,
    entries: Vec<Entry>,
) -> XrpcResult<Vec<(FeedItem, Option<String>)>> {
    let reposts: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.reason {
            Some(SkeletonReason::Repost(uri)) => Some(uri.as_str()),
            _ => None,
        })
        .collect();
    let mut found = std::collections::HashMap::new();
    if !reposts.is_empty() {
        static REPOSTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT r.uri, r.did, r.cid, r.subject_uri, r.indexed_at \
                 FROM unnest($1::text[]) AS u(uri) \
                 JOIN reposts r ON r.actor = {actor} AND r.rkey_id = ref_rkey(u.uri) \
                 WHERE r.uri = u.uri",
                actor = crate::compact::ref_actor("u.uri"),
            )
        });
        let statement = client.prepare_cached(&REPOSTS).await?;
        for row in client.query(&statement, &[&reposts]).await? {
            let subject: Option<String> = row.col("subject_uri")?;
            let at: std::time::SystemTime = row.col("indexed_at")?;
            found.insert(
                row.col::<String>("uri")?,
                (
                    subject,
                    row.col::<String>("did")?,
                    row.col::<String>("cid")?,
                    datetime_millis(at),
                ),
            );
        }
    }
    Ok(entries
        .into_iter()
        .map(|e| {
            let reason = match e.reason {
                Some(SkeletonReason::Pin) => Some(Reason::Pin),
                Some(SkeletonReason::Repost(uri)) => match found.get(&uri) {
                    Some((Some(subject), did, cid, at)) if *subject == e.post => {
                        Some(Reason::Repost {
                            by: did.clone(),
                            uri,
                            cid: cid.clone(),
                            indexed_at: at.clone(),
                        })
                    }
                    _ => None,
                },
                None => None,
            };
            (
                FeedItem {
                    post_uri: e.post,
                    reason,
                },
                e.context,
            )
        })
        .collect())
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
