//! app.bsky.graph.getRelationships (how one actor and others follow and
//! block each other) and getKnownFollowers (an actor's followers that the
//! viewer follows).

use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::compact::{did_id, followers_of};
use crate::db::RowExt;
use crate::error::{XrpcError, XrpcResult};
use crate::params::ActorRef;
use crate::routes::actor::served_actor;
use crate::routes::keyset::{with_cursor, Keyset};
use crate::routes::{json, Ctx};
use crate::views::{put_opt, Hydrator};

/// Each column is the oldest record of its kind, so the answer is stable
/// when an account follows or blocks twice.
const RELATIONSHIP_QUERY: &str = "\
SELECT o.did, \
  (SELECT f.uri FROM follows f WHERE f.did = $1 AND f.subject_did = o.did ORDER BY f.rkey LIMIT 1) AS following, \
  (SELECT f.uri FROM follows f WHERE f.did = o.did AND f.subject_did = $1 ORDER BY f.rkey LIMIT 1) AS followed_by, \
  (SELECT b.uri FROM blocks b WHERE b.did = $1 AND b.subject_did = o.did ORDER BY b.rkey LIMIT 1) AS blocking, \
  (SELECT b.uri FROM blocks b WHERE b.did = o.did AND b.subject_did = $1 ORDER BY b.rkey LIMIT 1) AS blocked_by, \
  (SELECT lb.list_uri FROM list_blocks lb JOIN list_items li ON li.list_uri = lb.list_uri \
     WHERE lb.did = $1 AND li.subject_did = o.did ORDER BY lb.rkey LIMIT 1) AS blocking_by_list, \
  (SELECT lb.list_uri FROM list_blocks lb JOIN list_items li ON li.list_uri = lb.list_uri \
     WHERE lb.did = o.did AND li.subject_did = $1 ORDER BY lb.rkey LIMIT 1) AS blocked_by_list \
FROM unnest($2::text[]) AS o(did)";

pub async fn get_relationships(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let actor = ctx.params.actor("actor")?;
    let others = if ctx.params.get("others").is_some() {
        ctx.params.actors("others", 30)?
    } else {
        Vec::new()
    };
    let client = ctx.db().await?;
    let did = served_actor(&client, "actor", &actor).await?;

    // Handles become DIDs in one query; unknown ones are `notFoundActor`.
    let handles: Vec<&str> = others
        .iter()
        .filter_map(|o| match o {
            ActorRef::Handle(h) => Some(h.as_str()),
            ActorRef::Did(_) => None,
        })
        .collect();
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT ON (handle) handle, did FROM actors \
             WHERE handle = ANY($1) AND indexed ORDER BY handle, handle_seq DESC NULLS LAST",
        )
        .await?;
    let by_handle: std::collections::HashMap<String, String> = client
        .query(&stmt, &[&handles])
        .await?
        .iter()
        .map(|r| Ok((r.col("handle")?, r.col("did")?)))
        .collect::<XrpcResult<_>>()?;
    let resolved: Vec<(String, Option<String>)> = others
        .iter()
        .map(|o| match o {
            ActorRef::Did(d) => (d.clone(), Some(d.clone())),
            ActorRef::Handle(h) => (h.clone(), by_handle.get(h).cloned()),
        })
        .collect();
    let dids: Vec<String> = resolved.iter().filter_map(|(_, d)| d.clone()).collect();
    let stmt = client
        .prepare_cached(&format!(
            "{RELATIONSHIP_QUERY} WHERE EXISTS (SELECT 1 FROM actors a WHERE a.did = o.did AND a.indexed)"
        ))
        .await?;
    let rows = client.query(&stmt, &[&did, &dids]).await?;
    let known: std::collections::HashMap<String, &tokio_postgres::Row> = rows
        .iter()
        .map(|r| Ok((r.col::<String>("did")?, r)))
        .collect::<XrpcResult<_>>()?;

    let relationships: Vec<Value> = resolved
        .iter()
        .map(
            |(given, other)| match other.as_ref().and_then(|d| known.get(d)) {
                Some(row) => {
                    let mut m = Map::new();
                    m.insert("$type".into(), json!("app.bsky.graph.defs#relationship"));
                    m.insert("did".into(), json!(row.col::<String>("did")?));
                    for (key, column) in [
                        ("following", "following"),
                        ("followedBy", "followed_by"),
                        ("blocking", "blocking"),
                        ("blockedBy", "blocked_by"),
                        ("blockingByList", "blocking_by_list"),
                        ("blockedByList", "blocked_by_list"),
                    ] {
                        put_opt(&mut m, key, row.col::<Option<&str>>(column)?);
                    }
                    Ok(Value::Object(m))
                }
                None => Ok(json!({
                    "$type": "app.bsky.graph.defs#notFoundActor",
                    "actor": given,
                    "notFound": true,
                })),
            },
        )
        .collect::<XrpcResult<_>>()?;
    json(&json!({ "actor": did, "relationships": relationships }))
}

pub async fn get_known_followers(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let viewer = ctx.require_viewer()?;
    let actor = ctx.params.actor("actor")?;
    let page = Keyset::parse(ctx)?;
    let client = ctx.db().await?;
    let subject = served_actor(&client, "actor", &actor).await?;
    let sql = format!(
        "SELECT f.did, f.rkey, f.uri FROM follows f \
         WHERE {followers} \
           AND EXISTS (SELECT 1 FROM follows v WHERE v.actor = {viewer} AND v.subject_actor = f.actor) \
         {page}",
        viewer = did_id("$2"),
        // the subject's followers newest first along their index, each
        // looked up among the viewer's follows by (actor, subject)
        followers = followers_of("f", "$1", page.key_param(2)),
        page = page.newest_first_by("f", "rkey_id", 2)
    );
    let rows = page.fetch(&client, &sql, &[&subject, &viewer]).await?;
    let mut dids = rows.column("did")?;
    dids.push(subject.clone());
    let hydrated = Hydrator::new(&client, ctx.config(), ctx.viewer())
        .hydrate(&[], &dids)
        .await?;
    dids.pop();
    let subject_view = hydrated
        .profile_view(&subject)
        .ok_or_else(|| XrpcError::invalid_request("actor: profile not found"))?;
    let followers: Vec<Value> = dids
        .iter()
        .filter(|did| !hydrated.blocked(did))
        .filter_map(|did| hydrated.profile_view(did))
        .collect();
    json(&with_cursor(
        json!({ "subject": subject_view, "followers": followers }),
        rows.next()?,
    ))
}
