//! Batched hydration: a response names the posts and actors it shows, the
//! hydrator loads them with a fixed number of queries (posts, quoted posts,
//! actors, the posts' bookmark counts, and with a viewer the viewer's
//! relationships, mutes, likes/reposts, bookmarks and thread mutes, and
//! the labels and takedowns of all of them in one statement), and
//! `Hydrated` renders views from memory.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::views::Db;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio_postgres::types::ToSql;

use crate::config::ApiConfig;
use crate::db::RowExt;
use crate::error::XrpcResult;
use crate::views::actor::{self, ActorInfo, ActorRenderer, ActorViewer, KnownFollowers};
use crate::views::embed::{self, RECORD, RECORD_WITH_MEDIA};
use crate::views::feed_view::{
    record_value, FeedPage, FeedViewPost, PostOrPlaceholder, PostView, PostViewerState, ReasonView,
    ReplyRef,
};
use crate::views::feedgen::{self, GeneratorInfo};
use crate::views::labeler::{self, LabelerInfo};
use crate::views::labels::{self, Label};
use crate::views::list::{self, ListInfo};
use crate::views::post::{self, PostInfo, PostViewer};
use crate::views::private::{self, PostPrivate};
use crate::views::starter_pack::{self, StarterPackInfo};
use crate::views::{datetime_millis, put, uri_did};

const POST_COLLECTION: &str = "app.bsky.feed.post";

pub struct Hydrator<'a> {
    pub client: &'a Db,
    pub config: &'a ApiConfig,
    pub viewer: Option<&'a str>,
    /// Records other than posts whose views the response shows (feed
    /// generators, lists, starter packs, labelers): their labels are
    /// loaded with the rest.
    pub records: Vec<String>,
}

/// Why a post appears in a feed other than being the author's own.
#[derive(Debug, Clone)]
pub enum Reason {
    Repost {
        by: String,
        uri: String,
        cid: String,
        indexed_at: String,
    },
    Pin,
}

/// Posts and actors loaded before [`Hydrator::complete`].
#[derive(Default)]
pub struct Loaded {
    pub posts: HashMap<String, PostInfo>,
    pub actors: HashMap<String, ActorInfo>,
}

/// A row of a feed page as [`Hydrator::load_page`] returns it.
#[derive(Debug, Clone)]
pub struct PageRow {
    pub uri: String,
    pub rkey: String,
    /// The reposted post, when the row is a repost.
    pub subject: Option<String>,
    /// The repost's CID and when it was indexed.
    pub cid: Option<String>,
    pub indexed_at: Option<String>,
    n: i64,
}

#[derive(Debug, Clone)]
pub struct FeedItem {
    pub post_uri: String,
    pub reason: Option<Reason>,
}

impl<'a> Hydrator<'a> {
    pub fn new(client: &'a Db, config: &'a ApiConfig, viewer: Option<&'a str>) -> Self {
        Hydrator {
            client,
            config,
            viewer,
            records: Vec::new(),
        }
    }

    /// Also loads the labels of these records (not posts), for their views.
    pub fn with_records(mut self, uris: impl IntoIterator<Item = String>) -> Self {
        self.records.extend(uris);
        self
    }

    /// Loads `post_uris` (and the posts they quote) and `dids` (and every
    /// loaded post's author).
    pub async fn hydrate(&self, post_uris: &[String], dids: &[String]) -> XrpcResult<Hydrated<'a>> {
        self.hydrate_posts(post_uris, false, dids).await
    }

    /// The actors `dids` for detailed profiles: with a viewer, also their
    /// known followers (found first, so that their profiles and the
    /// viewer's relations to them are hydrated with the rest).
    pub async fn hydrate_detailed(&self, dids: &[String]) -> XrpcResult<Hydrated<'a>> {
        let known = match self.viewer {
            Some(viewer) => actor::load_known_followers(self.client, viewer, dids).await?,
            None => HashMap::new(),
        };
        let all: Vec<String> = dedup(
            dids.iter().cloned().chain(
                known
                    .values()
                    .flat_map(|k| k.followers.iter().map(|(did, _)| did.clone())),
            ),
        );
        let mut hydrated = self.hydrate(&[], &all).await?;
        hydrated.known_followers = known;
        hydrated.detailed = dids.iter().cloned().collect();
        Ok(hydrated)
    }

    /// `hydrate`, with `reply_refs` also the posts that the listed ones reply
    /// to.
    async fn hydrate_posts(
        &self,
        post_uris: &[String],
        reply_refs: bool,
        dids: &[String],
    ) -> XrpcResult<Hydrated<'a>> {
        let load = post::PostLoad {
            reply_refs,
            viewer: self.viewer.is_some(),
        };
        let posts = post::load_posts(self.client, &dedup(post_uris.iter().cloned()), load).await?;
        self.complete(
            Loaded {
                posts,
                actors: HashMap::new(),
            },
            dids,
        )
        .await
    }

    /// A feed page, its posts and their authors in one statement: `ctes`
    /// defines `page` (`uri, rkey, subject, cid, at, n`: the feed's rows,
    /// `subject` the post a repost reposts, `n` their order) and `listed`
    /// (the posts it shows, with [`post::POST_COLUMNS`]) over `params`, whose
    /// `$1` is a DID whose actor is loaded too. The posts they reply to and
    /// quote are loaded with them. Returns the page's rows in order, for
    /// [`Hydrator::complete`] what it loaded.
    pub async fn load_page(
        &self,
        ctes: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> XrpcResult<(Vec<PageRow>, Loaded)> {
        let viewer = if self.viewer.is_some() {
            "true"
        } else {
            "false"
        };
        let sql = post::posts_statement(ctes, "true", viewer, Some("$1::text"));
        let rows = self
            .client
            .query(&self.client.prepare_cached(&sql).await?, params)
            .await?;
        let mut page = Vec::new();
        let mut loaded = Loaded::default();
        for row in &rows {
            match row.col::<i32>("kind")? {
                post::ROW_PAGE => page.push(PageRow {
                    uri: row.col("uri")?,
                    rkey: row.col("page_rkey")?,
                    subject: row.col("page_subject")?,
                    cid: crate::compact::row_cid(
                        row.col("cid")?,
                        row.col::<Option<String>>("record")?.as_deref(),
                    ),
                    indexed_at: row
                        .col::<Option<SystemTime>>("indexed_at")?
                        .map(datetime_millis),
                    n: row.col("page_n")?,
                }),
                post::ROW_POST => {
                    let info = post::post_info(row)?;
                    loaded.posts.insert(info.uri.clone(), info);
                }
                post::ROW_ACTOR => {
                    let info = actor::actor_info(row)?;
                    loaded.actors.insert(info.did.clone(), info);
                }
                _ => {}
            }
        }
        page.sort_by_key(|r| r.n);
        Ok((page, loaded))
    }

    /// Loads what the `loaded` posts show besides themselves (the records
    /// they quote other than posts, every author not loaded yet and the
    /// authors they reply to, the viewer's state) and `dids`.
    pub async fn complete(&self, loaded: Loaded, dids: &[String]) -> XrpcResult<Hydrated<'a>> {
        let Loaded {
            mut posts,
            mut actors,
        } = loaded;
        let embedded = self.load_embedded_records(&posts).await?;
        let all_dids = dedup(
            dids.iter()
                .cloned()
                .chain(posts.values().map(|p| p.did.clone()))
                // The authors of the posts replied to: a feed item's
                // `grandparentAuthor` is the author its parent replies to.
                // And of gated threads' roots: whether the viewer may reply
                // depends on the viewer's relations to the root's author
                // (a gate is loaded for a reply only when a viewer asks).
                .chain(posts.values().flat_map(|p| {
                    let gated_root = p.threadgate.as_ref().and(p.reply_root_uri.as_ref());
                    [p.reply_parent_uri.as_ref(), gated_root]
                        .into_iter()
                        .filter_map(|uri| uri.and_then(|u| super::uri_did(u)))
                        .map(str::to_owned)
                }))
                .chain(embedded.creators()),
        );
        let missing: Vec<String> = all_dids
            .iter()
            .filter(|did| !actors.contains_key(*did))
            .cloned()
            .collect();
        let all_posts: Vec<String> = posts.keys().cloned().collect();
        let threads: Vec<(String, String)> = posts
            .values()
            .map(|p| {
                let root = p.reply_root_uri.as_ref().unwrap_or(&p.uri);
                (p.uri.clone(), root.clone())
            })
            .collect();
        let records: Vec<String> = dedup(
            self.records
                .iter()
                .cloned()
                .chain(embedded.generators.keys().cloned())
                .chain(embedded.lists.keys().cloned())
                .chain(embedded.starter_packs.keys().cloned())
                .chain(embedded.labelers.keys().cloned()),
        );
        let subjects: Vec<String> = all_dids
            .iter()
            .chain(&all_posts)
            .chain(&records)
            .cloned()
            .collect();
        let (shown, hiding) = labels::request_labelers(self.config);
        let moderation = labels::load_moderation(self.client, &subjects, &shown, &hiding);
        let gate_lists = dedup(
            posts
                .values()
                .filter_map(|p| p.threadgate.as_ref())
                .flat_map(|tg| tg.allowed_lists().map(str::to_owned)),
        );
        let (more, mut actor_viewer, post_viewer, post_private, viewer_lists, mut moderation) =
            match self.viewer {
                Some(viewer) => {
                    let (a, av, ap, pv, pp, vl, m) = tokio::join!(
                        actor::load_actors(self.client, &missing),
                        actor::load_actor_viewer(self.client, viewer, &all_dids),
                        private::load_actor_private(self.client, viewer, &all_dids),
                        post::load_post_viewer(self.client, viewer, posts.values()),
                        private::load_post_private(self.client, Some(viewer), &threads),
                        post::load_viewer_lists(self.client, viewer, &gate_lists),
                        moderation,
                    );
                    let mut av = av?;
                    for (did, state) in ap? {
                        av.entry(did).or_default().private = state;
                    }
                    (a?, av, pv?, pp?, vl?, m?)
                }
                None => {
                    let (a, pp, m) = tokio::join!(
                        actor::load_actors(self.client, &missing),
                        private::load_post_private(self.client, None, &threads),
                        moderation,
                    );
                    (a?, HashMap::new(), HashMap::new(), pp?, HashSet::new(), m?)
                }
            };
        actors.extend(more);
        // A taken-down post is not found; a taken-down account is served as
        // one its host took down.
        posts.retain(|uri, _| !moderation.taken_down.contains(uri));
        // Labelers' labels come before self-labels, as the official AppView
        // lists them.
        for (uri, post) in posts.iter_mut() {
            let own = std::mem::replace(&mut post.labels, moderation.take(uri));
            post.labels.extend(own);
        }
        let record_labels: HashMap<String, Vec<Label>> = records
            .iter()
            .map(|uri| (uri.clone(), moderation.take(uri)))
            .filter(|(_, labels)| !labels.is_empty())
            .collect();
        for actor in actors.values_mut() {
            let own = std::mem::replace(&mut actor.labels, moderation.take(&actor.did));
            actor.labels.extend(own);
            if moderation.taken_down.contains(&actor.did) {
                actor.status = "takendown".into();
            }
        }
        let mute_lists = dedup(
            actor_viewer
                .values()
                .filter_map(|v| v.private.by_list.clone()),
        );
        let mute_lists = if mute_lists.is_empty() {
            HashMap::new()
        } else {
            self.load_mute_lists(&mute_lists, &mut actors, &mut actor_viewer)
                .await?
        };
        let mut hydrated = Hydrated {
            config: self.config,
            viewer: self.viewer,
            posts,
            embedded,
            actors,
            actor_viewer,
            post_viewer,
            post_private,
            muted_lists: HashMap::new(),
            known_followers: HashMap::new(),
            detailed: HashSet::new(),
            viewer_lists,
            record_labels,
        };
        hydrated.muted_lists = mute_lists
            .values()
            .filter_map(|l| Some((l.uri.clone(), list::list_view_basic(&hydrated, l)?)))
            .collect();
        Ok(hydrated)
    }

    /// The lists by which the viewer mutes actors (`mutedByList`), with
    /// their creators and the viewer's relationships with those: a second
    /// round of queries, only when the viewer mutes a list holding an actor
    /// the response shows.
    async fn load_mute_lists(
        &self,
        uris: &[String],
        actors: &mut HashMap<String, ActorInfo>,
        actor_viewer: &mut HashMap<String, ActorViewer>,
    ) -> XrpcResult<HashMap<String, ListInfo>> {
        let lists = list::load_lists(self.client, uris, self.viewer).await?;
        let creators: Vec<String> = dedup(
            lists
                .values()
                .map(|l| l.did.clone())
                .filter(|did| !actors.contains_key(did)),
        );
        if let (Some(viewer), false) = (self.viewer, creators.is_empty()) {
            let (more, states) = tokio::try_join!(
                actor::load_actors(self.client, &creators),
                actor::load_actor_viewer(self.client, viewer, &creators),
            )?;
            actors.extend(more);
            for (did, state) in states {
                actor_viewer.entry(did).or_insert(state);
            }
        }
        Ok(lists)
    }

    /// The feed generators, lists, starter packs and labelers that loaded
    /// posts quote: one query per kind present, none when posts only quote
    /// posts.
    async fn load_embedded_records(
        &self,
        posts: &HashMap<String, PostInfo>,
    ) -> XrpcResult<EmbeddedRecords> {
        let quoted = dedup(
            posts
                .values()
                .filter_map(|p| p.embed_record_uri.clone())
                .filter(|uri| !is_post_uri(uri)),
        );
        if quoted.is_empty() {
            return Ok(EmbeddedRecords::default());
        }
        let of = |collection: &str| -> Vec<String> {
            quoted
                .iter()
                .filter(|uri| uri_collection(uri) == Some(collection))
                .cloned()
                .collect()
        };
        let labeler_dids: Vec<String> = of(LABELER_COLLECTION)
            .iter()
            .filter(|uri| uri.ends_with("/self"))
            .filter_map(|uri| uri_did(uri).map(str::to_owned))
            .collect();
        let (generator_uris, list_uris, pack_uris) = (
            of(GENERATOR_COLLECTION),
            of(LIST_COLLECTION),
            of(STARTER_PACK_COLLECTION),
        );
        let (generators, lists, starter_packs, labelers) = tokio::try_join!(
            feedgen::load_generators(self.client, &generator_uris, self.viewer),
            list::load_lists(self.client, &list_uris, self.viewer),
            starter_pack::load_starter_packs(self.client, &pack_uris),
            labeler::load_labelers(self.client, &labeler_dids, self.viewer),
        )?;
        Ok(EmbeddedRecords {
            generators,
            lists,
            starter_packs,
            labelers,
        })
    }

    /// Hydrates feed items together with the posts they reply to.
    pub async fn hydrate_feed(&self, items: &[FeedItem]) -> XrpcResult<Hydrated<'a>> {
        let uris: Vec<String> = items.iter().map(|i| i.post_uri.clone()).collect();
        let dids: Vec<String> = items
            .iter()
            .filter_map(|i| match &i.reason {
                Some(Reason::Repost { by, .. }) => Some(by.clone()),
                _ => None,
            })
            .collect();
        self.hydrate_posts(&uris, true, &dids).await
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

fn is_post_uri(uri: &str) -> bool {
    uri_collection(uri) == Some(POST_COLLECTION)
}

fn uri_collection(uri: &str) -> Option<&str> {
    uri.split('/').nth(3)
}

const GENERATOR_COLLECTION: &str = "app.bsky.feed.generator";
const LIST_COLLECTION: &str = "app.bsky.graph.list";
const STARTER_PACK_COLLECTION: &str = "app.bsky.graph.starterpack";
const LABELER_COLLECTION: &str = "app.bsky.labeler.service";

/// Records other than posts that posts quote, by URI (labelers by DID).
#[derive(Default)]
pub struct EmbeddedRecords {
    pub generators: HashMap<String, GeneratorInfo>,
    pub lists: HashMap<String, ListInfo>,
    pub starter_packs: HashMap<String, StarterPackInfo>,
    pub labelers: HashMap<String, LabelerInfo>,
}

impl EmbeddedRecords {
    fn creators(&self) -> impl Iterator<Item = String> + '_ {
        self.generators
            .values()
            .map(|g| g.did.clone())
            .chain(self.lists.values().map(|l| l.did.clone()))
            .chain(self.starter_packs.values().map(|s| s.did.clone()))
            .chain(self.labelers.values().map(|l| l.did.clone()))
    }
}

pub struct Hydrated<'a> {
    pub config: &'a ApiConfig,
    pub viewer: Option<&'a str>,
    pub posts: HashMap<String, PostInfo>,
    pub embedded: EmbeddedRecords,
    pub actors: HashMap<String, ActorInfo>,
    pub actor_viewer: HashMap<String, ActorViewer>,
    pub post_viewer: HashMap<String, PostViewer>,
    /// Bookmark counts, and the viewer's bookmarks and thread mutes.
    pub post_private: HashMap<String, PostPrivate>,
    /// `listViewBasic` of the lists by which the viewer mutes actors.
    pub muted_lists: HashMap<String, Value>,
    /// Filled for detailed profiles only ([`Hydrator::hydrate_detailed`]).
    pub known_followers: HashMap<String, KnownFollowers>,
    /// The actors whose detailed profiles were asked for
    /// ([`Hydrator::hydrate_detailed`]).
    pub detailed: HashSet<String>,
    /// The lists named by the loaded threadgates that the viewer is in.
    pub viewer_lists: HashSet<String>,
    /// Labelers' labels of the records other than posts that were loaded.
    pub record_labels: HashMap<String, Vec<Label>>,
}

impl Hydrated<'_> {
    fn renderer(&self) -> ActorRenderer<'_> {
        ActorRenderer {
            config: self.config,
            viewer: self.viewer,
            viewer_state: &self.actor_viewer,
            muted_lists: &self.muted_lists,
        }
    }

    /// A served actor: indexed and active.
    pub fn actor(&self, did: &str) -> Option<&ActorInfo> {
        self.actors.get(did).filter(|a| a.is_visible())
    }

    pub fn profile_basic(&self, did: &str) -> Option<Value> {
        self.actor(did).map(|a| self.renderer().basic(a))
    }

    /// `profile_basic` as JSON text, rendered once per actor however many
    /// posts of a page show it.
    pub fn profile_basic_raw(&self, did: &str) -> Option<&RawValue> {
        let a = self.actor(did)?;
        if let Some(view) = a.basic_view.get() {
            return Some(view);
        }
        let view = serde_json::value::to_raw_value(&self.renderer().basic(a)).ok()?;
        Some(a.basic_view.get_or_init(|| view))
    }

    pub fn profile_view(&self, did: &str) -> Option<Value> {
        self.actor(did).map(|a| self.renderer().view(a))
    }

    /// `profile_view` with the viewer's activity subscription to the actor.
    pub fn profile_view_subscribed(&self, did: &str) -> Option<Value> {
        let mut view = self.profile_view(did)?;
        self.add_subscription(did, &mut view);
        Some(view)
    }

    /// Adds the viewer's activity subscription to `did`, if any, to the
    /// `viewer` of `did`'s profile view `view`.
    fn add_subscription(&self, did: &str, view: &mut Value) {
        if let (Some(sub), Some(Value::Object(viewer))) = (
            self.renderer().activity_subscription(did),
            view.get_mut("viewer"),
        ) {
            viewer.insert("activitySubscription".into(), sub.clone());
        }
    }

    pub fn profile_detailed(&self, did: &str) -> Option<Value> {
        let mut view = self.renderer().detailed(self.actor(did)?);
        if let (Some(known), Some(Value::Object(viewer))) =
            (self.known_followers.get(did), view.get_mut("viewer"))
        {
            // The count is every known follower; the sample leaves out who
            // the viewer blocks, who blocks the subject either way, and
            // accounts not served, as the reference AppView does. As there,
            // a follower whose detailed profile the same answer shows also
            // carries the viewer's activity subscription to it (the
            // official AppView loads subscriptions for those profiles).
            let shown: Vec<Value> = known
                .followers
                .iter()
                .filter(|(follower, blocked)| !blocked && !self.blocked(follower))
                .filter_map(|(follower, _)| {
                    let mut basic = self.profile_basic(follower)?;
                    if self.detailed.contains(follower) {
                        self.add_subscription(follower, &mut basic);
                    }
                    Some(basic)
                })
                .collect();
            viewer.insert(
                "knownFollowers".into(),
                json!({ "count": known.count, "followers": shown }),
            );
        }
        Some(view)
    }

    /// Whether the thread's gate keeps the viewer from replying to `p`, as
    /// the reference AppView decides it: `None` without a viewer or a gate;
    /// the root's author may always reply, a gate without rules lets anyone
    /// and an empty one no one; otherwise a rule must let the viewer in
    /// (mentioned in the root post, following its author, followed by its
    /// author, or in a listed list).
    fn reply_disabled(&self, p: &PostInfo) -> Option<bool> {
        let viewer = self.viewer?;
        // Nobody may reply under a reply the gate kept out.
        if p.violates_threadgate {
            return Some(true);
        }
        let gate = p.threadgate.as_ref()?;
        let root_uri = p.reply_root_uri.as_deref().unwrap_or(&p.uri);
        let owner = super::uri_did(root_uri)?;
        if viewer == owner {
            return Some(false);
        }
        let Some(rules) = gate.allow() else {
            return Some(false);
        };
        if rules.is_empty() {
            return Some(true);
        }
        let mentioned = gate.allows(post::MENTION_RULE)
            && self
                .posts
                .get(root_uri)
                .is_some_and(|root| post::mentions(&root.record, viewer));
        let relation = self.actor_viewer.get(owner);
        let allowed = mentioned
            || (gate.allows(post::FOLLOWER_RULE)
                && relation.is_some_and(|r| r.following.is_some()))
            || (gate.allows(post::FOLLOWING_RULE)
                && relation.is_some_and(|r| r.followed_by.is_some()))
            || gate.allowed_lists().any(|l| self.viewer_lists.contains(l));
        Some(!allowed)
    }

    /// The `labels` of a record's view other than a post's: the accepted
    /// labelers' labels, then the record's self-labels.
    pub fn record_labels(&self, uri: &str, cid: &str, record: &Value) -> Value {
        let mut all = self.record_labels.get(uri).cloned().unwrap_or_default();
        all.extend(labels::self_labels(uri, cid, record));
        labels::to_value(&all)
    }

    /// The viewer and `did` block each other (either direction, or by list).
    pub fn blocked(&self, did: &str) -> bool {
        self.viewer != Some(did)
            && self
                .actor_viewer
                .get(did)
                .map(ActorViewer::blocks)
                .unwrap_or(false)
    }

    /// The viewer mutes `did` fully, directly or by a list.
    pub fn muted(&self, did: &str) -> bool {
        self.viewer != Some(did)
            && self
                .actor_viewer
                .get(did)
                .is_some_and(|v| v.private.fully())
    }

    /// A feed item the viewer's mutes leave out of their timeline, as the
    /// reference AppView does: a post by a muted author, a quote post by an
    /// author whose quote posts are muted, a repost by a muted reposter or
    /// one whose reposts are muted.
    pub fn feed_item_muted(&self, item: &FeedItem) -> bool {
        let mute = |did: &str| {
            (self.viewer != Some(did))
                .then(|| self.actor_viewer.get(did).map(|v| &v.private))
                .flatten()
        };
        let Some(p) = self.posts.get(&item.post_uri) else {
            return false;
        };
        if self.muted(&p.did)
            || (p.embed_record_uri.is_some() && mute(&p.did).is_some_and(|m| m.only_quoteposts))
        {
            return true;
        }
        match &item.reason {
            Some(Reason::Repost { by, .. }) => {
                self.muted(by) || mute(by).is_some_and(|m| m.only_reposts)
            }
            _ => false,
        }
    }

    /// A feed item the viewer's blocks leave out of their timeline, list
    /// feeds and custom feeds, as the official AppView does: a repost by an
    /// account blocked either way, or a reply whose parent's or
    /// grandparent's author is (the post's own author is checked by
    /// [`Self::feed_view_post`]).
    pub fn feed_item_blocked(&self, item: &FeedItem) -> bool {
        if let Some(Reason::Repost { by, .. }) = &item.reason {
            if self.blocked(by) {
                return true;
            }
        }
        let parent = self
            .posts
            .get(&item.post_uri)
            .and_then(|p| p.reply_parent_uri.as_deref());
        let grandparent = parent
            .and_then(|uri| self.posts.get(uri))
            .and_then(|p| p.reply_parent_uri.as_deref());
        [parent, grandparent]
            .into_iter()
            .flatten()
            .filter_map(super::uri_did)
            .any(|did| self.blocked(did))
    }

    pub fn post(&self, uri: &str) -> Option<&PostInfo> {
        self.posts.get(uri).filter(|p| self.actor(&p.did).is_some())
    }

    /// `app.bsky.feed.defs#postView`, when the post and its author are served.
    pub fn post_view(&self, uri: &str) -> Option<Value> {
        self.post_view_raw(uri).map(PostView::into_value)
    }

    /// `post_view` with the record left as stored, for responses serialized
    /// without building a JSON tree of the whole page.
    pub fn post_view_raw(&self, uri: &str) -> Option<PostView<'_>> {
        let p = self.post(uri)?;
        let author = self.profile_basic_raw(&p.did)?;
        let private = self.post_private.get(uri);
        let viewer = self.viewer.map(|_| {
            let state = self.post_viewer.get(uri);
            PostViewerState {
                bookmarked: private.is_some_and(|s| s.bookmarked),
                embedding_disabled: p.embedding_disabled,
                like: state.and_then(|s| s.like.as_deref()),
                repost: state.and_then(|s| s.repost.as_deref()),
                reply_disabled: self.reply_disabled(p),
                thread_muted: private.is_some_and(|s| s.thread_muted),
            }
        });
        let threadgate = match (&p.reply_parent_uri, &p.threadgate) {
            (None, Some(tg)) => {
                Some(json!({"uri": tg.uri, "cid": tg.cid, "record": tg.record, "lists": []}))
            }
            _ => None,
        };
        Some(PostView {
            type_: None,
            author,
            bookmark_count: private.map_or(0, |s| s.bookmarks),
            cid: &p.cid,
            embed: p.embed.as_ref().and_then(|e| self.embed_view(p, e, 0)),
            indexed_at: &p.indexed_at,
            labels: &p.labels,
            like_count: p.likes,
            quote_count: p.quotes,
            reply_count: p.replies,
            repost_count: p.reposts,
            threadgate,
            uri: &p.uri,
            viewer,
            record: &p.record,
        })
    }

    /// A post, or the lexicon's placeholder saying why it is not shown.
    pub fn post_or_placeholder(&self, uri: &str) -> PostOrPlaceholder<'_> {
        if let Some(did) = self.posts.get(uri).map(|p| p.did.as_str()) {
            if self.blocked(did) {
                return PostOrPlaceholder::Placeholder(self.blocked_post(uri, did));
            }
        }
        match self.post_view_raw(uri) {
            Some(mut view) => {
                view.type_ = Some("app.bsky.feed.defs#postView");
                PostOrPlaceholder::Post(Box::new(view))
            }
            None => PostOrPlaceholder::Placeholder(not_found_post(uri)),
        }
    }

    pub fn blocked_post(&self, uri: &str, did: &str) -> Value {
        json!({
            "$type": "app.bsky.feed.defs#blockedPost",
            "uri": uri,
            "blocked": true,
            "author": self.blocked_author(did),
        })
    }

    pub fn blocked_author(&self, did: &str) -> Value {
        let mut author = json!({"did": did});
        if let Some(viewer) = self.renderer().viewer_json(did) {
            author["viewer"] = viewer;
        }
        author
    }

    /// A feed method's output: the items that are served, and `cursor`.
    pub fn feed_page<'s>(&'s self, items: &'s [FeedItem], cursor: Option<String>) -> FeedPage<'s> {
        FeedPage {
            feed: items
                .iter()
                .filter_map(|item| self.feed_view_post(item))
                .collect(),
            cursor,
        }
    }

    /// `app.bsky.feed.defs#feedViewPost`, or None when the post is not served.
    pub fn feed_view_post<'s>(&'s self, item: &'s FeedItem) -> Option<FeedViewPost<'s>> {
        let p = self.post(&item.post_uri)?;
        if self.blocked(&p.did) {
            return None;
        }
        // A reply its thread's gate disallows is shown without the thread
        // it was not let into, as the official AppView shows it.
        let reply = match (&p.reply_root_uri, &p.reply_parent_uri) {
            (Some(root), Some(parent)) if !p.violates_threadgate => {
                let parent_view = self.post_or_placeholder(parent);
                let grandparent_author = match &parent_view {
                    PostOrPlaceholder::Post(_) => self
                        .post(parent)
                        .and_then(|pp| pp.reply_parent_uri.as_deref())
                        .and_then(super::uri_did)
                        .and_then(|did| self.profile_basic_raw(did)),
                    PostOrPlaceholder::Placeholder(_) => None,
                };
                Some(ReplyRef {
                    root: self.post_or_placeholder(root),
                    parent: parent_view,
                    grandparent_author,
                })
            }
            _ => None,
        };
        let reason = match &item.reason {
            Some(Reason::Repost {
                by,
                uri,
                cid,
                indexed_at,
            }) => Some(ReasonView::Repost {
                type_: "app.bsky.feed.defs#reasonRepost",
                by: self.profile_basic_raw(by)?,
                cid,
                indexed_at,
                uri,
            }),
            Some(Reason::Pin) => Some(ReasonView::Pin {
                type_: "app.bsky.feed.defs#reasonPin",
            }),
            None => None,
        };
        Some(FeedViewPost {
            post: self.post_view_raw(&item.post_uri)?,
            reply,
            reason,
        })
    }

    fn embed_view(&self, p: &PostInfo, embed: &Value, depth: usize) -> Option<Value> {
        match embed::embed_type(embed)? {
            RECORD => {
                if depth > 0 {
                    return None;
                }
                let uri = embed.get("record")?.get("uri")?.as_str()?;
                Some(json!({
                    "$type": "app.bsky.embed.record#view",
                    "record": self.embedded_record(p, uri),
                }))
            }
            RECORD_WITH_MEDIA => {
                let media = embed::media_view(self.config, &p.did, embed.get("media")?)?;
                if depth > 0 {
                    return Some(media);
                }
                let uri = embed.get("record")?.get("record")?.get("uri")?.as_str()?;
                Some(json!({
                    "$type": "app.bsky.embed.recordWithMedia#view",
                    "record": {"record": self.embedded_record(p, uri)},
                    "media": media,
                }))
            }
            _ => embed::media_view(self.config, &p.did, embed),
        }
    }

    /// The inside of a record embed: the quoted post, or why it is not shown.
    fn embedded_record(&self, quoting: &PostInfo, uri: &str) -> Value {
        let not_found =
            || json!({"$type": "app.bsky.embed.record#viewNotFound", "uri": uri, "notFound": true});
        if quoting.detached_by_quoted {
            return json!({"$type": "app.bsky.embed.record#viewDetached", "uri": uri, "detached": true});
        }
        let Some(did) = uri_did(uri) else {
            return not_found();
        };
        if self.blocked(did) {
            return json!({
                "$type": "app.bsky.embed.record#viewBlocked",
                "uri": uri,
                "blocked": true,
                "author": self.blocked_author(did),
            });
        }
        if !is_post_uri(uri) {
            return self.embedded_other(uri, did).unwrap_or_else(not_found);
        }
        let (Some(q), Some(author)) = (self.post(uri), self.profile_basic(did)) else {
            return not_found();
        };
        let mut m = Map::new();
        put(&mut m, "$type", "app.bsky.embed.record#viewRecord");
        put(&mut m, "uri", &q.uri);
        put(&mut m, "cid", &q.cid);
        m.insert("author".into(), author);
        m.insert("value".into(), record_value(&q.record));
        m.insert("labels".into(), labels::to_value(&q.labels));
        m.insert("replyCount".into(), json!(q.replies));
        m.insert("repostCount".into(), json!(q.reposts));
        m.insert("likeCount".into(), json!(q.likes));
        m.insert("quoteCount".into(), json!(q.quotes));
        // Always a list, empty when the quoted post embeds nothing, as the
        // reference AppView answers.
        let embeds: Vec<Value> = q
            .embed
            .as_ref()
            .and_then(|e| self.embed_view(q, e, 1))
            .into_iter()
            .collect();
        m.insert("embeds".into(), Value::Array(embeds));
        put(&mut m, "indexedAt", &q.indexed_at);
        Value::Object(m)
    }
}

impl Hydrated<'_> {
    /// A quoted feed generator, list, starter pack or labeler, as the view the
    /// `app.bsky.embed.record#view` union names for it.
    fn embedded_other(&self, uri: &str, did: &str) -> Option<Value> {
        let e = &self.embedded;
        let (view, type_) = match uri_collection(uri)? {
            GENERATOR_COLLECTION => (
                feedgen::generator_view(self, e.generators.get(uri)?)?,
                "app.bsky.feed.defs#generatorView",
            ),
            LIST_COLLECTION => (
                list::list_view(self, e.lists.get(uri)?)?,
                "app.bsky.graph.defs#listView",
            ),
            STARTER_PACK_COLLECTION => (
                starter_pack::starter_pack_view_basic(self, e.starter_packs.get(uri)?)?,
                "app.bsky.graph.defs#starterPackViewBasic",
            ),
            LABELER_COLLECTION => {
                let l = e.labelers.get(did).filter(|l| l.uri == uri)?;
                (
                    labeler::labeler_view(self, l, false)?,
                    "app.bsky.labeler.defs#labelerView",
                )
            }
            _ => return None,
        };
        let mut view = view;
        view["$type"] = json!(type_);
        Some(view)
    }
}

pub fn not_found_post(uri: &str) -> Value {
    json!({"$type": "app.bsky.feed.defs#notFoundPost", "uri": uri, "notFound": true})
}
