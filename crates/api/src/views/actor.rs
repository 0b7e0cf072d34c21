//! Actors: loading them in batches and rendering the three profile views of
//! `app.bsky.actor.defs`.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::views::Db;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio_postgres::Row;

use crate::config::ApiConfig;
use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::params::ActorRef;
use crate::views::labels::{self, Label};
use crate::views::private::ActorPrivate;
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
    /// When the profile record was indexed; none without one, and then the
    /// views leave `indexedAt` out, as the reference AppView does.
    pub indexed_at: Option<String>,
    pub followers: i64,
    pub follows: i64,
    pub posts: i64,
    pub lists: i64,
    pub feedgens: i64,
    pub starter_packs: i64,
    pub labeler: bool,
    pub chat_allow_incoming: Option<String>,
    /// The profile record's self-labels.
    pub labels: Vec<Label>,
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

    /// The profile's description; an empty one is left out, as the
    /// reference AppView does.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref().filter(|d| !d.is_empty())
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
    /// Mutes and activity subscription, loaded apart (`views::private`)
    /// and merged in by the hydrator.
    pub private: ActorPrivate,
}

impl ActorViewer {
    /// Either side blocks the other: content between them is not shown.
    pub fn blocks(&self) -> bool {
        self.blocking.is_some() || self.blocked_by || self.blocking_by_list.is_some()
    }
}

/// What the profile views show of an actor `a`, named as [`actor_info`] reads it:
/// the index keeps the actor's counts and the fields of its profile and chat
/// declaration in its row, so a view is one lookup. [`ACTOR_JOINS`] finds
/// the row from a row `d` holding the DID.
pub const ACTOR_COLUMNS: &str = "\
a.did AS actor_did, a.handle AS actor_handle, a.status AS actor_status, \
a.display_name AS actor_display_name, a.description AS actor_description, \
a.avatar_cid AS actor_avatar_cid, a.banner_cid AS actor_banner_cid, \
a.pinned_post_uri AS actor_pinned_post_uri, a.pinned_post_cid AS actor_pinned_post_cid, \
a.profile_created_at AS actor_created_at, \
a.profile_indexed_at AS actor_indexed_at, \
a.followers AS actor_followers, a.follows AS actor_follows, a.posts AS actor_posts, \
a.lists AS actor_lists, a.feedgens AS actor_feedgens, a.starter_packs AS actor_starter_packs, \
a.labelers > 0 AS actor_labeler, a.chat_allow_incoming AS actor_chat_allow_incoming, \
apr.cid AS actor_profile_cid, apr.record->'labels' AS actor_profile_labels";

/// [`ACTOR_COLUMNS`] as NULLs of their types and with their names, for the
/// rows of a statement that also returns other things (the first of a
/// UNION's branches names the columns).
pub const NO_ACTOR_COLUMNS: &str = "\
NULL::text AS actor_did, NULL::text AS actor_handle, NULL::text AS actor_status, \
NULL::text AS actor_display_name, NULL::text AS actor_description, \
NULL::text AS actor_avatar_cid, NULL::text AS actor_banner_cid, \
NULL::text AS actor_pinned_post_uri, NULL::text AS actor_pinned_post_cid, \
NULL::text AS actor_created_at, NULL::timestamptz AS actor_indexed_at, \
NULL::bigint AS actor_followers, NULL::bigint AS actor_follows, NULL::bigint AS actor_posts, \
NULL::bigint AS actor_lists, NULL::bigint AS actor_feedgens, NULL::bigint AS actor_starter_packs, \
NULL::bool AS actor_labeler, NULL::text AS actor_chat_allow_incoming, \
NULL::text AS actor_profile_cid, NULL::jsonb AS actor_profile_labels";

/// Joins the `actors` row `alias` of the account whose DID is the SQL
/// expression `did`, only when that account is served (indexed and active,
/// what [`ActorInfo::is_visible`] checks of a loaded one): listings leave
/// out the rows of accounts not served before they cut their page, so the
/// page is not spent on rows hydration would drop.
pub fn served_actor(alias: &str, did: &str) -> String {
    format!("JOIN actors {alias} ON {alias}.did = {did} AND {alias}.indexed AND {alias}.status = 'active'")
}

/// The profile record is joined only when it carries labels (its other
/// fields are in the actor row), through the index of labeled profiles
/// (migration 0032), a page or two: the table's primary key would cost a
/// descent through every record's uri per actor shown.
pub const ACTOR_JOINS: &str = "JOIN actors a ON a.did = d.did AND a.indexed \
LEFT JOIN records apr ON apr.uri = 'at://' || a.did || '/app.bsky.actor.profile/self' \
AND apr.collection = 'app.bsky.actor.profile' AND apr.live AND apr.record ? 'labels'";

static ACTOR_QUERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {ACTOR_COLUMNS} FROM unnest($1::text[]) AS d(did) {ACTOR_JOINS}")
});

/// Loads the given actors in one query. Unknown DIDs are absent from the map.
pub async fn load_actors(client: &Db, dids: &[String]) -> XrpcResult<HashMap<String, ActorInfo>> {
    if dids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(&client.prepare_cached(&ACTOR_QUERY).await?, &[&dids])
        .await?;
    rows.iter()
        .map(|row| actor_info(row).map(|info| (info.did.clone(), info)))
        .collect()
}

/// The [`ACTOR_COLUMNS`] of `row`.
pub fn actor_info(row: &Row) -> XrpcResult<ActorInfo> {
    let did: String = row.col("actor_did")?;
    let created_at: Option<String> = row.col("actor_created_at")?;
    let labels = match row.col::<Option<String>>("actor_profile_cid")? {
        Some(cid) => labels::from_parts(
            &format!("at://{did}/app.bsky.actor.profile/self"),
            &cid,
            row.col::<Option<Value>>("actor_profile_labels")?.as_ref(),
            created_at.clone().map(Value::String).as_ref(),
        ),
        None => Vec::new(),
    };
    Ok(ActorInfo {
        labels,
        did,
        handle: row.col("actor_handle")?,
        status: row.col("actor_status")?,
        display_name: row.col("actor_display_name")?,
        description: row.col("actor_description")?,
        avatar_cid: row.col("actor_avatar_cid")?,
        banner_cid: row.col("actor_banner_cid")?,
        pinned_post_uri: row.col("actor_pinned_post_uri")?,
        pinned_post_cid: row.col("actor_pinned_post_cid")?,
        created_at,
        indexed_at: row
            .col::<Option<SystemTime>>("actor_indexed_at")?
            .map(datetime_millis),
        followers: row.col("actor_followers")?,
        follows: row.col("actor_follows")?,
        posts: row.col("actor_posts")?,
        lists: row.col("actor_lists")?,
        feedgens: row.col("actor_feedgens")?,
        starter_packs: row.col("actor_starter_packs")?,
        labeler: row.col("actor_labeler")?,
        chat_allow_incoming: row.col("actor_chat_allow_incoming")?,
        basic_view: OnceCell::new(),
    })
}

/// The viewer's follows of each account and back are read from the compact
/// follow rows by ids looked up once (through the `follows` view, each
/// probe would look both DIDs up again), their uris written from the DIDs.
/// The block lists the viewer subscribes to are looked into only when
/// there are any (once a statement), as few viewers have one.
static ACTOR_VIEWER_QUERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "\
WITH viewer AS MATERIALIZED (SELECT {viewer} AS id), \
subjects AS MATERIALIZED ( \
  SELECT u.did, d.id FROM unnest($1::text[]) AS u(did) LEFT JOIN dids d ON d.did = u.did) \
SELECT s.did, \
  (SELECT 'at://' || $2 || '/app.bsky.graph.follow/' || rkey_text(f.rkey) FROM follow_rows f \
     WHERE f.actor = v.id AND f.subject_actor = s.id AND f.live ORDER BY f.rkey LIMIT 1) AS following, \
  (SELECT 'at://' || s.did || '/app.bsky.graph.follow/' || rkey_text(f.rkey) FROM follow_rows f \
     WHERE f.actor = s.id AND f.subject_actor = v.id AND f.live ORDER BY f.rkey LIMIT 1) AS followed_by, \
  (SELECT b.uri FROM blocks b WHERE b.did = $2 AND b.subject_did = s.did ORDER BY b.rkey LIMIT 1) AS blocking, \
  (EXISTS (SELECT 1 FROM blocks b WHERE b.did = s.did AND b.subject_did = $2) \
   OR EXISTS (SELECT 1 FROM list_blocks lb JOIN list_items li ON li.list_uri = lb.list_uri \
     WHERE lb.did = s.did AND li.subject_did = $2)) AS blocked_by, \
  CASE WHEN EXISTS (SELECT 1 FROM list_blocks lb WHERE lb.did = $2) THEN \
    (SELECT lb.list_uri FROM list_blocks lb JOIN list_items li ON li.list_uri = lb.list_uri \
       WHERE lb.did = $2 AND li.subject_did = s.did LIMIT 1) END AS blocking_by_list \
FROM subjects s, viewer v",
        viewer = crate::compact::did_id("$2"),
    )
});

/// The viewer's relationships with each of `dids`, in one query.
pub async fn load_actor_viewer(
    client: &Db,
    viewer: &str,
    dids: &[String],
) -> XrpcResult<HashMap<String, ActorViewer>> {
    if dids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(&ACTOR_VIEWER_QUERY).await?,
            &[&dids, &viewer],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let state = ActorViewer {
                following: row.col("following")?,
                followed_by: row.col("followed_by")?,
                blocking: row.col("blocking")?,
                blocked_by: row.col("blocked_by")?,
                blocking_by_list: row.col("blocking_by_list")?,
                private: ActorPrivate::default(),
            };
            Ok((row.col("did")?, state))
        })
        .collect()
}

/// Those of `others` that `did` blocks or that block `did`, directly or by
/// a list: what the official AppView leaves out of a curation or reference
/// list's members (and a starter pack's sample) shown as the list's
/// creator's.
pub async fn blocks_with(client: &Db, did: &str, others: &[String]) -> XrpcResult<HashSet<String>> {
    Ok(load_actor_viewer(client, did, others)
        .await?
        .into_iter()
        .filter(|(other, state)| other != did && state.blocks())
        .map(|(other, _)| other)
        .collect())
}

/// The accounts the viewer follows that follow a subject, as a detailed
/// profile's `viewer.knownFollowers` shows them.
#[derive(Debug, Clone, Default)]
pub struct KnownFollowers {
    /// How many there are, whether shown or not.
    pub count: usize,
    /// The first [`KNOWN_FOLLOWERS_SHOWN`], in the order the viewer followed
    /// them, each with whether it and the subject block each other.
    pub followers: Vec<(String, bool)>,
}

/// How many known followers a profile names, as the reference AppView.
pub const KNOWN_FOLLOWERS_SHOWN: usize = 5;

const KNOWN_FOLLOWERS_QUERY: &str = "\
SELECT s.did AS subject, f.subject_did AS follower, \
  EXISTS (SELECT 1 FROM blocks b WHERE (b.did = s.did AND b.subject_did = f.subject_did) \
     OR (b.did = f.subject_did AND b.subject_did = s.did)) AS blocked \
FROM unnest($1::text[]) AS s(did) \
JOIN follows f ON f.did = $2 \
WHERE EXISTS (SELECT 1 FROM follows g WHERE g.did = f.subject_did AND g.subject_did = s.did) \
ORDER BY s.did, f.rkey, f.uri";

/// The known followers of each of `subjects` for `viewer`, in one query:
/// one probe of the follow index per account the viewer follows.
pub async fn load_known_followers(
    client: &Db,
    viewer: &str,
    subjects: &[String],
) -> XrpcResult<HashMap<String, KnownFollowers>> {
    if subjects.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &client.prepare_cached(KNOWN_FOLLOWERS_QUERY).await?,
            &[&subjects, &viewer],
        )
        .await?;
    let mut known: HashMap<String, KnownFollowers> = HashMap::new();
    for row in &rows {
        let entry = known.entry(row.col("subject")?).or_default();
        entry.count += 1;
        if entry.followers.len() < KNOWN_FOLLOWERS_SHOWN {
            entry
                .followers
                .push((row.col("follower")?, row.col("blocked")?));
        }
    }
    Ok(known)
}

/// Resolves a DID or handle to an indexed actor: its DID and account status.
pub async fn resolve_actor(client: &Db, actor: &ActorRef) -> XrpcResult<Option<(String, String)>> {
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
    row.map(|r| Ok((r.col("did")?, r.col("status")?)))
        .transpose()
}

/// Renders actors in the three shapes of `app.bsky.actor.defs`.
pub struct ActorRenderer<'a> {
    pub config: &'a ApiConfig,
    pub viewer: Option<&'a str>,
    pub viewer_state: &'a HashMap<String, ActorViewer>,
    /// `listViewBasic` of the lists by which the viewer mutes actors.
    pub muted_lists: &'a HashMap<String, Value>,
}

impl ActorRenderer<'_> {
    /// `#profileAssociated`, as the reference AppView fills it: the counts
    /// (zeros included) and whether the account is a labeler only in the
    /// detailed view; who may subscribe to the account's activity in every
    /// view (followers, the default while no declaration record is
    /// indexed); the chat declaration when there is one.
    fn associated(&self, a: &ActorInfo, detailed: bool) -> Map<String, Value> {
        let mut assoc = Map::new();
        if detailed {
            assoc.insert("lists".into(), json!(a.lists));
            assoc.insert("feedgens".into(), json!(a.feedgens));
            assoc.insert("starterPacks".into(), json!(a.starter_packs));
            assoc.insert("labeler".into(), json!(a.labeler));
        }
        if let Some(allow) = &a.chat_allow_incoming {
            assoc.insert("chat".into(), json!({ "allowIncoming": allow }));
        }
        assoc.insert(
            "activitySubscription".into(),
            json!({ "allowSubscriptions": "followers" }),
        );
        assoc
    }

    fn common(&self, a: &ActorInfo, detailed: bool) -> Map<String, Value> {
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
        m.insert(
            "associated".into(),
            Value::Object(self.associated(a, detailed)),
        );
        if let Some(viewer) = self.viewer_json(&a.did) {
            m.insert("viewer".into(), viewer);
        }
        m.insert("labels".into(), labels::to_value(&a.labels));
        if let Some(created) = a.created_at.as_deref().filter(|c| is_datetime(c)) {
            put(&mut m, "createdAt", created);
        }
        m
    }

    /// `#viewerState`, when there is a viewer and the actor is not the viewer.
    pub fn viewer_json(&self, did: &str) -> Option<Value> {
        let viewer = self.viewer?;
        if viewer == did {
            return Some(json!({
                "muted": false,
                "mutedOnlyReposts": false,
                "mutedOnlyQuoteposts": false,
                "blockedBy": false
            }));
        }
        let state = self.viewer_state.get(did).cloned().unwrap_or_default();
        let mut m = Map::new();
        let mute = &state.private;
        // Scoped mutes are exclusive with a full one, as the lexicon says.
        m.insert("muted".into(), json!(mute.fully()));
        m.insert(
            "mutedOnlyReposts".into(),
            json!(!mute.fully() && mute.only_reposts),
        );
        m.insert(
            "mutedOnlyQuoteposts".into(),
            json!(!mute.fully() && mute.only_quoteposts),
        );
        if let Some(list) = mute.by_list.as_ref().and_then(|l| self.muted_lists.get(l)) {
            m.insert("mutedByList".into(), list.clone());
        }
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
        Value::Object(self.common(a, false))
    }

    pub fn view(&self, a: &ActorInfo) -> Value {
        let mut m = self.common(a, false);
        put_opt(&mut m, "description", a.description());
        put_opt(&mut m, "indexedAt", a.indexed_at.as_deref());
        Value::Object(m)
    }

    /// The viewer's activity subscription to `did`, shown in some views
    /// (detailed profiles, the list of subscriptions) as the reference
    /// AppView does, while the actor allows it: accounts allow their
    /// followers to subscribe (the default, and all that `associated`
    /// shows).
    pub fn activity_subscription(&self, did: &str) -> Option<&Value> {
        let state = self.viewer_state.get(did)?;
        state.following.as_ref()?;
        state.private.activity_subscription.as_ref()
    }

    pub fn detailed(&self, a: &ActorInfo) -> Value {
        let mut m = self.common(a, true);
        if let (Some(sub), Some(Value::Object(viewer))) =
            (self.activity_subscription(&a.did), m.get_mut("viewer"))
        {
            viewer.insert("activitySubscription".into(), sub.clone());
        }
        put_opt(&mut m, "description", a.description());
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
        put_opt(&mut m, "indexedAt", a.indexed_at.as_deref());
        if let (Some(uri), Some(cid)) = (&a.pinned_post_uri, &a.pinned_post_cid) {
            m.insert("pinnedPost".into(), json!({"uri": uri, "cid": cid}));
        }
        Value::Object(m)
    }
}
