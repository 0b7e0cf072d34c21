//! app.bsky.feed.getFeed: a custom feed. The generator record (indexed)
//! names the DID of the service serving the feed; its DID document names
//! the `#bsky_fg` endpoint, which is asked for `getFeedSkeleton` with the
//! caller's own token, and the skeleton's posts are hydrated in its order.
//! Posts that cannot be shown (unknown, deleted, by unserved or blocked
//! accounts) are left out; the generator's cursor is kept. A generator that
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

    let mut items: Vec<(FeedItem, Option<String>)> = Vec::new();
    let mut reposts: Vec<String> = Vec::new();
    for item in skeleton.feed.into_iter().take(limit as usize) {
        if skyhose_proto::syntax::parse_at_uri(&item.post).is_none() {
            failure("bad_item");
            tracing::info!(%service_did, post = %item.post.chars().take(300).collect::<String>(),
                "feed generator listed something that is not an AT-URI; left out");
            continue;
        }
        let reason = item.reason.as_ref();
        let kind = reason.and_then(|r| r.get("$type")).and_then(Value::as_str);
        let reason = match kind {
            Some(SKELETON_REASON_PIN) => Some(Reason::Pin),
            Some(SKELETON_REASON_REPOST) => {
                if let Some(uri) = reason.and_then(|r| r.get("repost")).and_then(Value::as_str) {
                    reposts.push(uri.to_owned());
                    Some(Reason::Repost {
                        by: String::new(),
                        uri: uri.to_owned(),
                        cid: String::new(),
                        indexed_at: String::new(),
                    })
                } else {
                    None
                }
            }
            _ => None,
        };
        items.push((
            FeedItem {
                post_uri: item.post,
                reason,
            },
            item.feed_context,
        ));
    }
    fill_reposts(&client, &reposts, &mut items).await?;

    let feed_items: Vec<FeedItem> = items.iter().map(|(i, _)| i.clone()).collect();
    let hydrated = Hydrator::new(&client, ctx.config(), viewer.as_deref())
        .hydrate_feed(&feed_items)
        .await?;
    let mut feed = Vec::with_capacity(items.len());
    for (item, context) in &items {
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

/// Completes the repost reasons from the index: who reposted, the record's
/// CID and time. A repost that is not indexed, or that reposts another
/// post than the item's, shows the post without a reason.
async fn fill_reposts(
    client: &crate::views::Db,
    uris: &[String],
    items: &mut [(FeedItem, Option<String>)],
) -> XrpcResult<()> {
    if uris.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(
            "SELECT r.uri, r.did, r.cid, r.subject_uri, r.indexed_at \
             FROM reposts r WHERE r.uri = ANY($1::text[])",
        )
        .await?;
    let mut found = std::collections::HashMap::new();
    for row in client.query(&statement, &[&uris]).await? {
        let uri: String = row.col("uri")?;
        let at: std::time::SystemTime = row.col("indexed_at")?;
        found.insert(
            uri,
            (
                row.col::<String>("did")?,
                row.col::<String>("cid")?,
                row.col::<Option<String>>("subject_uri")?,
                datetime_millis(at),
            ),
        );
    }
    for (item, _) in items.iter_mut() {
        let Some(Reason::Repost { uri, .. }) = &item.reason else {
            continue;
        };
        item.reason = match found.get(uri) {
            Some((did, cid, Some(subject), at)) if *subject == item.post_uri => {
                Some(Reason::Repost {
                    by: did.clone(),
                    uri: uri.clone(),
                    cid: cid.clone(),
                    indexed_at: at.clone(),
                })
            }
            _ => None,
        };
    }
    Ok(())
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
