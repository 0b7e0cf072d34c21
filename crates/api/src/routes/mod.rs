//! One module per lexicon namespace; `dispatch` maps a query's NSID to its
//! handler, `dispatch_procedure` a procedure's (a POST with a JSON input).
//! Handlers parse their parameters or input first (400 on anything bad),
//! then load rows, then hydrate everything they show in one batch.

mod actor;
mod bookmarks;
mod custom_feed;
mod feed;
mod fill;
mod follows;
mod generators;
mod input;
mod interactions;
mod keyset;
mod labeler;
mod lists;
mod mutes;
mod notification;
mod relationships;
mod repo;
mod search;
mod settings;
mod starter_packs;
mod suggestions;
mod thread_v2;
mod timeline;
mod unspecced;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Object;
use serde::Serialize;

use crate::error::{XrpcError, XrpcResult};
use crate::params::Params;
use crate::routes::input::Input;
pub(crate) use crate::routes::input::BAD_INPUT;
use crate::views::labels;
use crate::AppState;

/// What a handler gets: parsed parameters, the viewer if authenticated, and
/// the shared state.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub params: Params,
    pub viewer: Option<String>,
    pub nsid: &'a str,
    /// The Authorization header as sent: `getFeed` checks it itself (its
    /// token may be meant for the feed generator) and passes it on.
    pub authorization: Option<&'a str>,
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

/// `answers`: handlers that answer alone; `listings`: handlers of one page
/// of a listing, whose pages `fill::fill_page` fills.
macro_rules! methods {
    (
        answers { $($nsid:literal => $handler:path,)* }
        listings { $($l_nsid:literal => $l_handler:path,)* }
    ) => {
        /// Every NSID this service answers.
        pub const METHODS: &[&str] = &[$($nsid,)* $($l_nsid,)*];

        /// The NSID as a static string when we serve it (for metric labels).
        pub fn known_method(nsid: &str) -> Option<&'static str> {
            match nsid {
                $($nsid => Some($nsid),)*
                $($l_nsid => Some($l_nsid),)*
                _ => None,
            }
        }

        async fn call(ctx: &Ctx<'_>) -> XrpcResult<Response> {
            match ctx.nsid {
                $($nsid => $handler(ctx).await,)*
                $($l_nsid => fill::fill_page(ctx, $l_handler).await,)*
                other => Err(XrpcError::method_not_implemented(other)),
            }
        }
    };
}

methods! {
answers {
    "app.bsky.actor.getProfile" => actor::get_profile,
    "app.bsky.actor.getProfiles" => actor::get_profiles,
    "app.bsky.feed.getPosts" => feed::get_posts,
    "app.bsky.feed.getPostThread" => feed::get_post_thread,
    "app.bsky.unspecced.getPostThreadV2" => thread_v2::get_post_thread_v2,
    "app.bsky.unspecced.getPostThreadOtherV2" => thread_v2::get_post_thread_other_v2,
    "app.bsky.feed.getFeed" => custom_feed::get_feed,
    "app.bsky.unspecced.getConfig" => unspecced::get_config,
    "app.bsky.graph.getSuggestedFollowsByActor" => suggestions::get_suggested_follows_by_actor,
    "app.bsky.unspecced.getSuggestedUsers" => suggestions::get_suggested_users,
    "app.bsky.unspecced.getSuggestedFeeds" => suggestions::get_unspecced_suggested_feeds,
    "app.bsky.unspecced.getTrendingTopics" => suggestions::get_trending_topics,
    "app.bsky.unspecced.getTrends" => suggestions::get_trends,
    "app.bsky.actor.searchActorsTypeahead" => search::search_actors_typeahead,
    "app.bsky.feed.getFeedGenerator" => generators::get_feed_generator,
    "app.bsky.feed.getFeedGenerators" => generators::get_feed_generators,
    "app.bsky.notification.getUnreadCount" => notification::get_unread_count,
    "app.bsky.graph.getKnownFollowers" => relationships::get_known_followers,
    "app.bsky.graph.getRelationships" => relationships::get_relationships,
    "app.bsky.graph.getStarterPack" => starter_packs::get_starter_pack,
    "app.bsky.graph.getStarterPacks" => starter_packs::get_starter_packs,
    "app.bsky.labeler.getServices" => labeler::get_services,
    "com.atproto.label.queryLabels" => labeler::query_labels,
    "com.atproto.identity.resolveHandle" => repo::resolve_handle,
    "com.atproto.repo.getRecord" => repo::get_record,
    "app.bsky.notification.getPreferences" => settings::get_notification_preferences,
    "app.bsky.actor.getPreferences" => settings::get_actor_preferences,
}
listings {
    "app.bsky.feed.getAuthorFeed" => feed::get_author_feed,
    "app.bsky.actor.getSuggestions" => suggestions::get_suggestions,
    "app.bsky.feed.getSuggestedFeeds" => suggestions::get_popular_feed_generators,
    "app.bsky.unspecced.getPopularFeedGenerators" => suggestions::get_popular_feed_generators,
    "app.bsky.feed.getLikes" => interactions::get_likes,
    "app.bsky.feed.getRepostedBy" => interactions::get_reposted_by,
    "app.bsky.feed.getQuotes" => interactions::get_quotes,
    "app.bsky.feed.getActorLikes" => interactions::get_actor_likes,
    "app.bsky.feed.searchPosts" => search::search_posts,
    "app.bsky.actor.searchActors" => search::search_actors,
    "app.bsky.feed.getActorFeeds" => generators::get_actor_feeds,
    "app.bsky.feed.getListFeed" => timeline::get_list_feed,
    "app.bsky.feed.getTimeline" => timeline::get_timeline,
    "app.bsky.notification.listNotifications" => notification::list_notifications,
    "app.bsky.graph.getFollowers" => follows::get_followers,
    "app.bsky.graph.getFollows" => follows::get_follows,
    "app.bsky.graph.getBlocks" => lists::get_blocks,
    "app.bsky.graph.getLists" => lists::get_lists,
    "app.bsky.graph.getList" => lists::get_list,
    "app.bsky.graph.getListBlocks" => lists::get_list_blocks,
    "app.bsky.graph.getActorStarterPacks" => starter_packs::get_actor_starter_packs,
    "app.bsky.graph.getMutes" => mutes::get_mutes,
    "app.bsky.graph.getListMutes" => mutes::get_list_mutes,
    "app.bsky.bookmark.getBookmarks" => bookmarks::get_bookmarks,
    "app.bsky.notification.listActivitySubscriptions" => settings::list_activity_subscriptions,
}
}

macro_rules! procedures {
    ($($nsid:literal => $handler:path,)*) => {
        /// Every procedure this service answers: the viewer's private state.
        pub const PROCEDURES: &[&str] = &[$($nsid,)*];

        /// The NSID as a static string when it is a procedure we serve.
        pub fn known_procedure(nsid: &str) -> Option<&'static str> {
            match nsid {
                $($nsid => Some($nsid),)*
                _ => None,
            }
        }

        async fn call_procedure(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
            match ctx.nsid {
                $($nsid => $handler(ctx, input).await,)*
                other => Err(XrpcError::method_not_implemented(other)),
            }
        }
    };
}

procedures! {
    "app.bsky.graph.muteActor" => mutes::mute_actor,
    "app.bsky.graph.unmuteActor" => mutes::unmute_actor,
    "app.bsky.graph.muteActorList" => mutes::mute_actor_list,
    "app.bsky.graph.unmuteActorList" => mutes::unmute_actor_list,
    "app.bsky.graph.muteThread" => mutes::mute_thread,
    "app.bsky.graph.unmuteThread" => mutes::unmute_thread,
    "app.bsky.bookmark.createBookmark" => bookmarks::create_bookmark,
    "app.bsky.bookmark.deleteBookmark" => bookmarks::delete_bookmark,
    "app.bsky.notification.updateSeen" => settings::update_seen,
    "app.bsky.notification.putPreferencesV2" => settings::put_notification_preferences,
    "app.bsky.notification.putActivitySubscription" => settings::put_activity_subscription,
    "app.bsky.notification.registerPush" => settings::register_push,
    "app.bsky.notification.unregisterPush" => settings::unregister_push,
    "app.bsky.actor.putPreferences" => settings::put_actor_preferences,
}

/// The answer to a method called with the other HTTP verb: a query sent as
/// a POST, or a procedure as a GET.
fn wrong_verb(nsid: &str, procedure: bool) -> XrpcError {
    let (is, verb) = if procedure {
        ("a procedure", "POST")
    } else {
        ("a query", "GET")
    };
    XrpcError::invalid_request(format!("{nsid} is {is}: send it as a {verb}"))
}

/// The answer to an NSID that names no method served with this verb.
fn unknown_method(nsid: &str) -> XrpcError {
    if skyhose_proto::syntax::is_nsid(nsid) {
        return XrpcError::method_not_implemented(nsid);
    }
    XrpcError::invalid_request(format!(
        "{:?} is not a method name",
        nsid.chars().take(100).collect::<String>()
    ))
}

pub async fn dispatch(
    state: &AppState,
    nsid: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> XrpcResult<Response> {
    if known_method(nsid).is_none() {
        if known_procedure(nsid).is_some() {
            return Err(wrong_verb(nsid, true));
        }
        return Err(unknown_method(nsid));
    }
    let params = Params::parse(query)?;
    let authorization = authorization(headers)?;
    // getFeed checks its token itself: one minted for the feed generator
    // is accepted there, and passed on (`custom_feed`).
    let viewer = match authorization {
        Some(value) if nsid != crate::auth::FEED_METHOD => Some(verify(state, value, nsid).await?),
        _ => None,
    };
    let ctx = Ctx {
        state,
        params,
        viewer,
        nsid,
        authorization,
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

/// A procedure: `body` is its JSON input. Only the account the token was
/// issued by (its `iss`) is written for.
pub async fn dispatch_procedure(
    state: &AppState,
    nsid: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> XrpcResult<Response> {
    if known_procedure(nsid).is_none() {
        if known_method(nsid).is_some() {
            return Err(wrong_verb(nsid, false));
        }
        return Err(unknown_method(nsid));
    }
    let authorization = authorization(headers)?;
    let viewer = match authorization {
        Some(value) => Some(verify(state, value, nsid).await?),
        None => None,
    };
    let ctx = Ctx {
        state,
        params: Params::default(),
        viewer,
        nsid,
        authorization,
    };
    ctx.require_viewer()?;
    let input = Input::parse(nsid, body)?;
    call_procedure(&ctx, &input).await
}

/// The Authorization header, if the request carries one.
fn authorization(headers: &HeaderMap) -> XrpcResult<Option<&str>> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|value| {
            value.to_str().map_err(|_| {
                XrpcError::auth_refused(
                    "AuthenticationRequired",
                    "the Authorization header is not text",
                )
            })
        })
        .transpose()
}

/// The viewer a service-auth token names for method `nsid`; a token that is
/// refused fails the request.
async fn verify(state: &AppState, value: &str, nsid: &str) -> XrpcResult<String> {
    state
        .auth
        .verify(value, nsid)
        .await
        .map_err(|err| auth_refused(nsid, err))
}

/// A refused token: counted, logged, and answered with the official name.
pub fn auth_refused(nsid: &str, err: crate::AuthError) -> XrpcError {
    metrics::counter!(crate::error::AUTH_FAILURES, "reason" => err.reason()).increment(1);
    tracing::info!(nsid, error = %err, "service-auth token refused");
    XrpcError::auth_refused(err.name(), err.public_message())
}

/// The labelers whose labels a client wants in views.
const ACCEPT_LABELERS: &str = "atproto-accept-labelers";
/// The labelers whose labels a response carries.
const CONTENT_LABELERS: &str = "atproto-content-labelers";
