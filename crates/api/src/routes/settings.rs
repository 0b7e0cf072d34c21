//! The viewer's settings kept by the AppView (migration 0019): when they
//! last saw their notifications, notification preferences, activity
//! subscriptions, push registrations, and `app.bsky.actor` preferences for
//! a PDS that forwards them. Every write replaces or removes one row, so
//! repeating it changes nothing.

use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::routes::fill::Listing;
use crate::routes::input::{done, write, Input};
use crate::routes::keyset::{with_cursor, Keyset};
use crate::routes::mutes::newest_written;
use crate::routes::{json, Ctx};
use crate::views::Hydrator;

pub async fn update_seen(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let seen_at = input.datetime_micros("seenAt")?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "INSERT INTO private_notification_seen (did, seen_at) \
         VALUES ($1, 'epoch'::timestamptz + $2::int8 * interval '1 microsecond') \
         ON CONFLICT (did) DO UPDATE SET seen_at = EXCLUDED.seen_at",
        &[&viewer, &seen_at],
    )
    .await?;
    done()
}

/// The notification kinds whose preference filters by author
/// (`#filterablePreference`), and those that only turn on and off
/// (`#preference`).
const FILTERABLE: &[&str] = &[
    "follow",
    "like",
    "likeViaRepost",
    "mention",
    "quote",
    "reply",
    "repost",
    "repostViaRepost",
];
const SIMPLE: &[&str] = &[
    "starterpackJoined",
    "subscribedPost",
    "unverified",
    "verified",
];

/// `#preferences` from what the account put: every kind present, with the
/// reference AppView's defaults (everything listed and pushed, from
/// everyone) where the account put nothing. `chat` is deprecated and always
/// its default.
fn notification_preferences(stored: &Map<String, Value>) -> Value {
    let flag = |p: Option<&Value>, key: &str| {
        p.and_then(|p| p.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    };
    let mut out = Map::new();
    out.insert("chat".into(), json!({"include": "all", "push": true}));
    for kind in FILTERABLE {
        let p = stored.get(*kind);
        let include = match p.and_then(|p| p.get("include")).and_then(Value::as_str) {
            Some("follows") => "follows",
            _ => "all",
        };
        out.insert(
            (*kind).into(),
            json!({"include": include, "list": flag(p, "list"), "push": flag(p, "push")}),
        );
    }
    for kind in SIMPLE {
        let p = stored.get(*kind);
        out.insert(
            (*kind).into(),
            json!({"list": flag(p, "list"), "push": flag(p, "push")}),
        );
    }
    Value::Object(out)
}

async fn stored_object(
    client: &crate::views::Db,
    table: &str,
    viewer: &str,
) -> XrpcResult<Option<Value>> {
    let stmt = client
        .prepare_cached(&format!("SELECT preferences FROM {table} WHERE did = $1"))
        .await?;
    client
        .query_opt(&stmt, &[&viewer])
        .await?
        .map(|row| row.col::<Value>("preferences"))
        .transpose()
}

pub async fn get_notification_preferences(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let viewer = ctx.require_viewer()?;
    let client = ctx.db().await?;
    let stored = stored_object(&client, "private_notification_preferences", viewer).await?;
    let stored = match stored {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    json(&json!({ "preferences": notification_preferences(&stored) }))
}

/// One preference of the input, checked against its lexicon shape.
fn preference(input: &Input, kind: &str, filterable: bool) -> XrpcResult<Option<Value>> {
    let Some(p) = input.optional_object(kind)? else {
        return Ok(None);
    };
    let bad = |problem: &str| {
        metrics::counter!(crate::routes::input::BAD_INPUT, "reason" => "field").increment(1);
        XrpcError::invalid_request(format!("invalid input field {kind:?}: {problem}"))
    };
    let flag = |key: &str| {
        p.get(key)
            .and_then(Value::as_bool)
            .ok_or_else(|| bad(&format!("{key} must be a boolean")))
    };
    let (list, push) = (flag("list")?, flag("push")?);
    if !filterable {
        return Ok(Some(json!({"list": list, "push": push})));
    }
    let include = p
        .get("include")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("include must be a string"))?;
    Ok(Some(
        json!({"include": include, "list": list, "push": push}),
    ))
}

/// Replaces the preferences the input names, keeps the others.
pub async fn put_notification_preferences(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let mut put = Map::new();
    for (kinds, filterable) in [(FILTERABLE, true), (SIMPLE, false)] {
        for kind in kinds {
            if let Some(p) = preference(input, kind, filterable)? {
                put.insert((*kind).into(), p);
            }
        }
    }
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    let put = Value::Object(put);
    write(
        &mut client,
        "INSERT INTO private_notification_preferences (did, preferences) VALUES ($1, $2) \
         ON CONFLICT (did) DO UPDATE \
         SET preferences = private_notification_preferences.preferences || EXCLUDED.preferences",
        &[&viewer, &put],
    )
    .await?;
    let stored = stored_object(&client, "private_notification_preferences", viewer).await?;
    let stored = match stored {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    json(&json!({ "preferences": notification_preferences(&stored) }))
}

/// Subscribes to (or, with neither posts nor replies, unsubscribes from)
/// an account's activity.
pub async fn put_activity_subscription(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let subject = input.did("subject")?;
    let sub = input.object("activitySubscription")?;
    let flag = |key: &str| {
        sub.get(key).and_then(Value::as_bool).ok_or_else(|| {
            metrics::counter!(crate::routes::input::BAD_INPUT, "reason" => "field").increment(1);
            XrpcError::invalid_request(format!(
                "invalid input field \"activitySubscription\": {key} must be a boolean"
            ))
        })
    };
    let (post, reply) = (flag("post")?, flag("reply")?);
    let viewer = ctx.require_viewer()?;
    if subject == viewer {
        return Err(XrpcError::invalid_request(
            "subject: Cannot subscribe to own activity",
        ));
    }
    let mut client = ctx.db().await?;
    if post || reply {
        write(
            &mut client,
            "INSERT INTO private_activity_subscriptions (did, subject_did, post, reply) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (did, subject_did) DO UPDATE \
             SET post = EXCLUDED.post, reply = EXCLUDED.reply",
            &[&viewer, &subject, &post, &reply],
        )
        .await?;
        json(&json!({
            "subject": subject,
            "activitySubscription": {"post": post, "reply": reply},
        }))
    } else {
        write(
            &mut client,
            "DELETE FROM private_activity_subscriptions WHERE did = $1 AND subject_did = $2",
            &[&viewer, &subject],
        )
        .await?;
        json(&json!({ "subject": subject }))
    }
}

/// The accounts whose activity the viewer subscribed to, newest first.
pub async fn list_activity_subscriptions(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    let page = Keyset::parse(ctx)?;
    let viewer = ctx.require_viewer()?;
    let client = ctx.db().await?;
    let sql = newest_written(
        "subject_did AS uri",
        "FROM private_activity_subscriptions WHERE did = $1",
        &page,
    );
    let rows = page.fetch(&client, &sql, &[&viewer]).await?;
    let dids = rows.column("uri")?;
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    let subscriptions: Vec<Value> = dids
        .iter()
        .filter_map(|did| hydrated.profile_view_subscribed(did))
        .collect();
    Listing::serialize(
        &with_cursor(json!({ "subscriptions": subscriptions }), rows.next()?),
        "subscriptions",
        page.limit,
    )
}

/// The fields that name one push registration.
struct PushTarget {
    service_did: String,
    token: String,
    platform: String,
    app_id: String,
}

fn push_target(input: &Input) -> XrpcResult<PushTarget> {
    let platform = input.str("platform")?;
    if !["ios", "android", "web"].contains(&platform) {
        metrics::counter!(crate::routes::input::BAD_INPUT, "reason" => "field").increment(1);
        return Err(XrpcError::invalid_request(format!(
            "invalid input field \"platform\": {platform:?} is not ios, android or web"
        )));
    }
    Ok(PushTarget {
        service_did: input.did("serviceDid")?,
        token: input.bounded_str("token", 4096)?.to_owned(),
        platform: platform.to_owned(),
        app_id: input.bounded_str("appId", 256)?.to_owned(),
    })
}

pub async fn register_push(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let t = push_target(input)?;
    let age_restricted = input.optional_bool("ageRestricted")?.unwrap_or(false);
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "INSERT INTO private_push_registrations \
           (did, service_did, token, platform, app_id, age_restricted) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (did, service_did, token, app_id) DO UPDATE \
         SET platform = EXCLUDED.platform, age_restricted = EXCLUDED.age_restricted",
        &[
            &viewer,
            &t.service_did,
            &t.token,
            &t.platform,
            &t.app_id,
            &age_restricted,
        ],
    )
    .await?;
    done()
}

pub async fn unregister_push(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let t = push_target(input)?;
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    write(
        &mut client,
        "DELETE FROM private_push_registrations \
         WHERE did = $1 AND service_did = $2 AND token = $3 AND app_id = $4",
        &[&viewer, &t.service_did, &t.token, &t.app_id],
    )
    .await?;
    done()
}

pub async fn get_actor_preferences(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let viewer = ctx.require_viewer()?;
    let client = ctx.db().await?;
    let stored = stored_object(&client, "private_actor_preferences", viewer).await?;
    json(&json!({ "preferences": stored.unwrap_or_else(|| json!([])) }))
}

/// Replaces the account's preferences: an array of objects, each with the
/// `$type` of the preference it is.
pub async fn put_actor_preferences(ctx: &Ctx<'_>, input: &Input) -> XrpcResult<Response> {
    let preferences = input.array("preferences")?;
    if let Some(i) = preferences.iter().position(|p| {
        p.get("$type")
            .and_then(Value::as_str)
            .is_none_or(|t| t.is_empty())
    }) {
        metrics::counter!(crate::routes::input::BAD_INPUT, "reason" => "field").increment(1);
        return Err(XrpcError::invalid_request(format!(
            "invalid input field \"preferences\": item {i} is not an object with a $type"
        )));
    }
    let viewer = ctx.require_viewer()?;
    let mut client = ctx.db().await?;
    let preferences = Value::Array(preferences.clone());
    write(
        &mut client,
        "INSERT INTO private_actor_preferences (did, preferences) VALUES ($1, $2) \
         ON CONFLICT (did) DO UPDATE SET preferences = EXCLUDED.preferences",
        &[&viewer, &preferences],
    )
    .await?;
    done()
}
