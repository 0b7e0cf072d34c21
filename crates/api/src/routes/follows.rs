//! app.bsky.graph.getFollowers / getFollows: follow records newest first,
//! rendered as profile views.

use serde_json::{json, Value};

use crate::compact::{account_rows, followers_of};
use crate::error::{XrpcError, XrpcResult};
use crate::routes::actor::served_actor;
use crate::routes::fill::Listing;
use crate::routes::keyset::{with_cursor, Keyset};
use crate::routes::Ctx;
use crate::views::Hydrator;

enum Direction {
    /// Accounts following the subject.
    Followers,
    /// Accounts the subject follows.
    Follows,
}

pub async fn get_followers(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    list(ctx, Direction::Followers).await
}

pub async fn get_follows(ctx: &Ctx<'_>) -> XrpcResult<Listing> {
    list(ctx, Direction::Follows).await
}

async fn list(ctx: &Ctx<'_>, direction: Direction) -> XrpcResult<Listing> {
    let actor = ctx.params.actor("actor")?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let subject = served_actor(&client, "actor", &actor).await?;
    // An account's follows are a range of the primary key (actor, rkey);
    // its followers a range of the (subject, rkey) index: both newest first
    // in their index's order.
    let (other_col, field, select) = match direction {
        Direction::Followers => (
            "did",
            "followers",
            followers_of("f", "$1", page.key_param(1)),
        ),
        Direction::Follows => (
            "subject_did",
            "follows",
            account_rows("f", "$1", page.key_param(1)),
        ),
    };
    let sql = format!(
        "SELECT f.{other_col}, f.rkey, f.uri FROM follows f \
         WHERE {select} AND f.{other_col} IS NOT NULL {page}",
        page = page.newest_first_by("f", "rkey_id", 1)
    );
    let rows = page.fetch(&client, &sql, &[&subject]).await?;
    let mut dids = rows.column(other_col)?;
    dids.push(subject.clone());
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    dids.pop();
    let subject_view = hydrated
        .profile_view(&subject)
        .ok_or_else(|| XrpcError::invalid_request("actor: profile not found"))?;
    let people: Vec<Value> = dids
        .iter()
        .filter(|did| !hydrated.blocked(did))
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    Listing::serialize(
        &with_cursor(
            json!({ "subject": subject_view, field: people }),
            rows.next()?,
        ),
        field,
        page.limit,
    )
}
