//! One module per lexicon namespace; `dispatch` maps an NSID to its handler.
//! Handlers parse their parameters first (400 on anything bad), then load
//! rows, then hydrate everything they show in one batch.

mod actor;
mod feed;
mod follows;
mod generators;
mod interactions;
mod keyset;
mod labeler;
mod lists;
mod notification;
mod relationships;
mod repo;
mod search;
mod starter_packs;
mod timeline;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Object;
use serde::Serialize;

use crate::error::{XrpcError, XrpcResult};
use crate::params::Params;
use crate::views::labels;
use crate::AppState;

/// What a handler gets: parsed parameters, the viewer if authenticated, and
/// the shared state.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub params: Params,
    pub viewer: Option<String>,
    pub nsid: &'a str,
}

impl Ctx<'_> {
    pub async fn db(&self) -> XrpcResult<Object> {
        Ok(self.state.pool.get().await?)
    }

    pub fn viewer(&self) -> Option<&str> {
        self.viewer.as_deref()
    }

    pub fn require_viewer(&self) -> XrpcResult<&str> {
        self.viewer.as_deref().ok_or_else(|| {
            XrpcError::auth_missing(format!(
                "{} needs a viewer: send a service-auth token in the Authorization header",
                self.nsid
            ))
        })
    }

    pub fn config(&self) -> &crate::ApiConfig {
        &self.state.config
    }
}

pub fn json<T: Serialize>(value: &T) -> XrpcResult<Response> {
    // Pages of posts run to tens of kilobytes: starting larger than
    // serde_json's 128 bytes saves most of the copies of a growing buffer.
    let mut body = Vec::with_capacity(16 * 1024);
    serde_json::to_writer(&mut body, value).map_err(|e| {
        tracing::error!(error = %e, "serialising a response");
        XrpcError::internal()
    })?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

macro_rules! methods {
    ($($nsid:literal => $handler:path,)*) => {
        /// Every NSID this service answers.
        pub const METHODS: &[&str] = &[$($nsid,)*];

        /// The NSID as a static string when we serve it (for metric labels).
        pub fn known_method(nsid: &str) -> Option<&'static str> {
            match nsid {
                $($nsid => Some($nsid),)*
                _ => None,
            }
        }

        async fn call(ctx: &Ctx<'_>) -> XrpcResult<Response> {
            match ctx.nsid {
                $($nsid => $handler(ctx).await,)*
                other => Err(XrpcError::method_not_implemented(other)),
            }
        }
    };
}

methods! {
    "app.bsky.actor.getProfile" => actor::get_profile,
    "app.bsky.actor.getProfiles" => actor::get_profiles,
    "app.bsky.feed.getPosts" => feed::get_posts,
    "app.bsky.feed.getAuthorFeed" => feed::get_author_feed,
    "app.bsky.feed.getPostThread" => feed::get_post_thread,
    "app.bsky.feed.getLikes" => interactions::get_likes,
    "app.bsky.feed.getRepostedBy" => interactions::get_reposted_by,
    "app.bsky.feed.getQuotes" => interactions::get_quotes,
    "app.bsky.feed.getActorLikes" => interactions::get_actor_likes,
    "app.bsky.feed.searchPosts" => search::search_posts,
    "app.bsky.actor.searchActors" => search::search_actors,
    "app.bsky.actor.searchActorsTypeahead" => search::search_actors_typeahead,
    "app.bsky.feed.getFeedGenerator" => generators::get_feed_generator,
    "app.bsky.feed.getFeedGenerators" => generators::get_feed_generators,
    "app.bsky.feed.getActorFeeds" => generators::get_actor_feeds,
    "app.bsky.feed.getListFeed" => timeline::get_list_feed,
    "app.bsky.feed.getTimeline" => timeline::get_timeline,
    "app.bsky.notification.listNotifications" => notification::list_notifications,
    "app.bsky.notification.getUnreadCount" => notification::get_unread_count,
    "app.bsky.graph.getFollowers" => follows::get_followers,
    "app.bsky.graph.getFollows" => follows::get_follows,
    "app.bsky.graph.getKnownFollowers" => relationships::get_known_followers,
    "app.bsky.graph.getRelationships" => relationships::get_relationships,
    "app.bsky.graph.getBlocks" => lists::get_blocks,
    "app.bsky.graph.getLists" => lists::get_lists,
    "app.bsky.graph.getList" => lists::get_list,
    "app.bsky.graph.getListBlocks" => lists::get_list_blocks,
    "app.bsky.graph.getStarterPack" => starter_packs::get_starter_pack,
    "app.bsky.graph.getStarterPacks" => starter_packs::get_starter_packs,
    "app.bsky.graph.getActorStarterPacks" => starter_packs::get_actor_starter_packs,
    "app.bsky.labeler.getServices" => labeler::get_services,
    "com.atproto.label.queryLabels" => labeler::query_labels,
    "com.atproto.identity.resolveHandle" => repo::resolve_handle,
    "com.atproto.repo.getRecord" => repo::get_record,
}

pub async fn dispatch(
    state: &AppState,
    nsid: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> XrpcResult<Response> {
    if known_method(nsid).is_none() {
        if skyhose_proto::syntax::is_nsid(nsid) {
            return Err(XrpcError::method_not_implemented(nsid));
        }
        return Err(XrpcError::invalid_request(format!(
            "{:?} is not a method name",
            nsid.chars().take(100).collect::<String>()
        )));
    }
    let params = Params::parse(query)?;
    let viewer = match headers.get(axum::http::header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| {
                XrpcError::auth_refused(
                    "AuthenticationRequired",
                    "the Authorization header is not text",
                )
            })?;
            match state.auth.verify(value, nsid).await {
                Ok(did) => Some(did),
                Err(err) => {
                    metrics::counter!(crate::error::AUTH_FAILURES, "reason" => err.reason())
                        .increment(1);
                    tracing::info!(nsid, error = %err, "service-auth token refused");
                    return Err(XrpcError::auth_refused(err.name(), err.public_message()));
                }
            }
        }
    };
    let ctx = Ctx {
        state,
        params,
        viewer,
        nsid,
    };
    let configured = &state.config.labelers;
    let accepted = labels::accepted_labelers(
        headers.get(ACCEPT_LABELERS).and_then(|v| v.to_str().ok()),
        configured,
    );
    let accepted = if accepted.iter().all(|a| configured.contains(&a.did)) {
        accepted
    } else {
        labels::available_labelers(&*ctx.db().await?, accepted, configured).await?
    };
    let applied = axum::http::HeaderValue::from_str(&labels::content_labelers(&accepted));
    let mut response = labels::ACCEPTED_LABELERS
        .scope(accepted.into(), call(&ctx))
        .await?;
    if let Ok(applied) = applied {
        response.headers_mut().insert(CONTENT_LABELERS, applied);
    }
    Ok(response)
}

/// The labelers whose labels a client wants in views.
const ACCEPT_LABELERS: &str = "atproto-accept-labelers";
/// The labelers whose labels a response carries.
const CONTENT_LABELERS: &str = "atproto-content-labelers";
