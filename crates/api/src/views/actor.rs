//! Actors: loading them in batches and rendering the three profile views of
//! `app.bsky.actor.defs`.

use std::cell::OnceCell;
use std::collections::HashMap;

use crate::views::Db;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio_postgres::Row;

use crate::config::ApiConfig;
use crate::params::ActorRef;
use crate::views::{datetime_millis, is_datetime, put, put_opt};

/// Everything the profile views show of one actor.
#[derive(Debug, Clone)]
pub struct ActorInfo {
    pub did: String,
    pub handle: Option<String>,
    pub status: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub avatar_cid: Option<String>,
    pub banner_cid: Option<String>,
    pub pinned_post_uri: Option<String>,
    pub pinned_post_cid: Option<String>,
    pub created_at: Option<String>,
    pub indexed_at: String,
    pub followers: i64,
    pub follows: i64,
    pub posts: i64,
    pub lists: i64,
    pub feedgens: i64,
    pub starter_packs: i64,
    pub labeler: bool,
    pub chat_allow_incoming: Option<String>,
    /// `profileViewBasic` as JSON text, once rendered.
    pub basic_view: OnceCell<Box<RawValue>>,
}

impl ActorInfo {
    /// Takendown, suspended, deactivated and deleted accounts are not served.
    pub fn is_visible(&self) -> bool {
        self.status == "active"
    }

    pub fn handle_or_invalid(&self) -> &str {
        self.handle.as_deref().unwrap_or("handle.invalid")
    }
}

/// The viewer's relationships with one actor.
#[derive(Debug, Clone, Default)]
pub struct ActorViewer {
    pub following: Option<String>,
    pub followed_by: Option<String>,
    pub blocking: Option<String>,
    pub blocked_by: bool,
    pub blocking_by_list: Option<String>,
}

impl ActorViewer {
    /// Either side blocks the other: content between them is not shown.
    pub fn blocks(&self) -> bool {
        self.blocking.is_some() || self.blocked_by || self.blocking_by_list.is_some()
    }
}

/// What the profile views show of an actor `a`, as [`actor_info`] reads it:
/// the index keeps the actor's counts and the fields of its profile and chat
/// declaration in its row, so a view is one lookup. [`ACTOR_JOINS`] finds
/// the row from a row `d` holding the DID.
pub const ACTOR_COLUMNS: &str = "\
a.did, a.handle, a.status, a.display_name, a.description, a.avatar_cid, a.banner_cid, \
a.pinned_post_uri, a.pinned_post_cid, a.profile_created_at, \
COALESCE(a.profile_indexed_at, a.first_seen), \
a.followers, a.follows, a.posts, a.lists, a.feedgens, a.starter_packs, a.labelers > 0, \
a.chat_allow_incoming";

/// [`ACTOR_COLUMNS`] as NULLs of their types, for the rows of a statement
/// that also returns other things.
pub const NO_ACTOR_COLUMNS: &str = "\
NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, \
NULL::text, NULL::text, NULL::text, NULL::timestamptz, \
NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, \
NULL::bool, NULL::text";

pub const ACTOR_JOINS: &str = "JOIN actors a ON a.did = d.did AND a.indexed";

static ACTOR_QUERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {ACTOR_COLUMNS} FROM unnest($1::text[]) AS d(did) {ACTOR_JOINS}")
});

/// Loads the given actors in one query. Unknown DIDs are absent from the map.
pub async fn load_actors(
    client: &Db,
    dids: &[String],
) -> Result<HashMap<String, ActorInfo>, tokio_postgres::Error> {
    if dids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(&client.prepare_cached(&ACTOR_QUERY).await?, &[&dids])
        .await?;
    Ok(rows
        .iter()
        .map(|row| actor_info(row, 0))
        .map(|info| (info.did.clone(), info))
        .collect())
}

/// The [`ACTOR_COLUMNS`] of `row`, starting at column `at`.
pub fn actor_info(row: &Row, at: usize) -> ActorInfo {
    ActorInfo {
        did: row.get(at),
        handle: row.get(at + 1),
        status: row.get(at + 2),
        display_name: row.get(at + 3),
        description: row.get(at + 4),
        avatar_cid: row.get(at + 5),
        banner_cid: row.get(at + 6),
        pinned_post_uri: row.get(at + 7),
        pinned_post_cid: row.get(at + 8),
        created_at: row.get(at + 9),
        indexed_at: datetime_millis(row.get(at + 10)),
        followers: row.get(at + 11),
        follows: row.get(at + 12),
        posts: row.get(at + 13),
        lists: row.get(at + 14),
        feedgens: row.get(at + 15),
        starter_packs: row.get(at + 16),
        labeler: row.get(at + 17),
        chat_allow_incoming: row.get(at + 18),
        basic_view: OnceCell::new(),
    }
}

const ACTOR_VIEWER_QUERY: &str = "\
SELECT d.did, \
  (SELECT f.uri FROM follows f WHERE f.did = $2 AND f.subject_did = d.did ORDER BY f.rkey LIMIT 1), \
  (SELECT f.uri FROM follows f WHERE f.did = d.did AND f.subject_did = $2 ORDER BY f.rkey LIMIT 1), \
  (SELECT b.uri FROM blocks b WHERE b.did = $2 AND b.subject_did = d.did ORDER BY b.rkey LIMIT 1), \
  EXISTS (SELECT 1 FROM blocks b WHERE b.did = d.did AND b.subject_did = $2), \
  (SELECT lb.list_uri FROM list_blocks lb JOIN list_items li ON li.list_uri = lb.list_uri \
     WHERE lb.did = $2 AND li.subject_did = d.did LIMIT 1) \
FROM unnest($1::text[]) AS d(did)";

/// The viewer's relationships with each of `dids`, in one query.
pub async fn load_actor_viewer(
    client: &Db,
    viewer: &str,
    dids: &[String],
) -> Result<HashMap<String, ActorViewer>, tokio_postgres::Error> {
    if dids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(ACTOR_VIEWER_QUERY).await?,
            &[&dids, &viewer],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let did: String = row.get(0);
            let state = ActorViewer {
                following: row.get(1),
                followed_by: row.get(2),
                blocking: row.get(3),
                blocked_by: row.get(4),
                blocking_by_list: row.get(5),
            };
            (did, state)
        })
        .collect())
}

/// Resolves a DID or handle to an indexed actor: its DID and account status.
pub async fn resolve_actor(
    client: &Db,
    actor: &ActorRef,
) -> Result<Option<(String, String)>, tokio_postgres::Error> {
    let row = match actor {
        ActorRef::Did(did) => {
            let stmt = client
                .prepare_cached("SELECT did, status FROM actors WHERE did = $1 AND indexed")
                .await?;
            client.query_opt(&stmt, &[did]).await?
        }
        ActorRef::Handle(handle) => {
            let stmt = client
                .prepare_cached(
                    "SELECT did, status FROM actors WHERE handle = $1 AND indexed \
                     AND status <> 'deleted' \
                     ORDER BY handle_verified DESC NULLS LAST, handle_seq DESC NULLS LAST LIMIT 1",
                )
                .await?;
            client.query_opt(&stmt, &[handle]).await?
        }
    };
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Renders actors in the three shapes of `app.bsky.actor.defs`.
pub struct ActorRenderer<'a> {
    pub config: &'a ApiConfig,
    pub viewer: Option<&'a str>,
    pub viewer_state: &'a HashMap<String, ActorViewer>,
}

impl ActorRenderer<'_> {
    fn common(&self, a: &ActorInfo) -> Map<String, Value> {
        let mut m = Map::new();
        put(&mut m, "did", &a.did);
        put(&mut m, "handle", a.handle_or_invalid());
        put_opt(&mut m, "displayName", a.display_name.as_deref());
        if let Some(cid) = &a.avatar_cid {
            put(
                &mut m,
                "avatar",
                self.config.image_url("avatar", &a.did, cid),
            );
        }
        let mut assoc = Map::new();
        if a.lists > 0 {
            assoc.insert("lists".into(), json!(a.lists));
        }
        if a.feedgens > 0 {
            assoc.insert("feedgens".into(), json!(a.feedgens));
        }
        if a.starter_packs > 0 {
            assoc.insert("starterPacks".into(), json!(a.starter_packs));
        }
        if a.labeler {
            assoc.insert("labeler".into(), json!(true));
        }
        if let Some(allow) = &a.chat_allow_incoming {
            assoc.insert("chat".into(), json!({ "allowIncoming": allow }));
        }
        if !assoc.is_empty() {
            m.insert("associated".into(), Value::Object(assoc));
        }
        if let Some(viewer) = self.viewer_json(&a.did) {
            m.insert("viewer".into(), viewer);
        }
        m.insert("labels".into(), json!([]));
        if let Some(created) = a.created_at.as_deref().filter(|c| is_datetime(c)) {
            put(&mut m, "createdAt", created);
        }
        m
    }

    /// `#viewerState`, when there is a viewer and the actor is not the viewer.
    pub fn viewer_json(&self, did: &str) -> Option<Value> {
        let viewer = self.viewer?;
        if viewer == did {
            return Some(json!({"muted": false, "blockedBy": false}));
        }
        let state = self.viewer_state.get(did).cloned().unwrap_or_default();
        let mut m = Map::new();
        m.insert("muted".into(), json!(false));
        m.insert("blockedBy".into(), json!(state.blocked_by));
        put_opt(&mut m, "blocking", state.blocking.as_deref());
        // Blocks hide follow state either way, as the reference AppView does.
        if !state.blocks() {
            put_opt(&mut m, "following", state.following.as_deref());
            put_opt(&mut m, "followedBy", state.followed_by.as_deref());
        }
        Some(Value::Object(m))
    }

    pub fn basic(&self, a: &ActorInfo) -> Value {
        Value::Object(self.common(a))
    }

    pub fn view(&self, a: &ActorInfo) -> Value {
        let mut m = self.common(a);
        put_opt(&mut m, "description", a.description.as_deref());
        put(&mut m, "indexedAt", &a.indexed_at);
        Value::Object(m)
    }

    pub fn detailed(&self, a: &ActorInfo) -> Value {
        let mut m = self.common(a);
        put_opt(&mut m, "description", a.description.as_deref());
        if let Some(cid) = &a.banner_cid {
            put(
                &mut m,
                "banner",
                self.config.image_url("banner", &a.did, cid),
            );
        }
        m.insert("followersCount".into(), json!(a.followers));
        m.insert("followsCount".into(), json!(a.follows));
        m.insert("postsCount".into(), json!(a.posts));
        put(&mut m, "indexedAt", &a.indexed_at);
        if let (Some(uri), Some(cid)) = (&a.pinned_post_uri, &a.pinned_post_cid) {
            m.insert("pinnedPost".into(), json!({"uri": uri, "cid": cid}));
        }
        Value::Object(m)
    }
}
