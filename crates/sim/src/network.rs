//! The synthetic network: accounts, their repositories and the event mix.
//! Everything derives from `SimConfig` through one PRNG and a synthetic clock,
//! so a config always yields byte-identical frames.

use std::collections::VecDeque;

use crate::clock::{rfc3339, tid};
use crate::fasthash::{FastMap, FastSet};
use crate::records::{self, Feature, PostParts, StrongRef};
use crate::rng::SplitMix64;
use crate::truth::{self, GroundTruth, RecordLink};
use crate::wire::{self, Account, Cid, Commit, Event, Identity, OpAction, RepoOp, Sync, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    /// Accounts that exist from the start; a few more join over time.
    pub accounts: usize,
    /// Timestamp of the first event, in microseconds since the Unix epoch.
    pub start_time_micros: i64,
    /// Synthetic time between consecutive events (at least 4, so TIDs of the ops
    /// of one commit never collide with the next commit's).
    pub step_micros: i64,
    /// Probability, per event, that a new account joins.
    pub join_probability: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            accounts: 1000,
            start_time_micros: 1_730_419_200_000_000, // 2024-11-01T00:00:00Z
            step_micros: 1000,
            join_probability: 0.001,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Deactivated,
    Takendown,
    Deleted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Deactivated => "deactivated",
            Status::Takendown => "takendown",
            Status::Deleted => "deleted",
        }
    }
}

struct LiveRecord {
    cid: Cid,
    link: RecordLink,
    /// For posts: the thread root, which replies to this post must reference.
    root: Option<StrongRef>,
}

/// The live records of one repo, with O(1) random choice and removal.
#[derive(Default)]
struct LiveSet {
    paths: Vec<String>,
    index: FastMap<String, usize>,
    records: Vec<LiveRecord>,
}

impl LiveSet {
    fn get(&self, path: &str) -> Option<&LiveRecord> {
        self.index.get(path).and_then(|&i| self.records.get(i))
    }

    fn put(&mut self, path: String, record: LiveRecord) {
        if let Some(&i) = self.index.get(&path) {
            if let Some(slot) = self.records.get_mut(i) {
                *slot = record;
            }
            return;
        }
        self.index.insert(path.clone(), self.paths.len());
        self.paths.push(path);
        self.records.push(record);
    }

    fn remove(&mut self, path: &str) -> Option<LiveRecord> {
        let i = self.index.remove(path)?;
        self.paths.swap_remove(i);
        let record = self.records.swap_remove(i);
        if let Some(moved) = self.paths.get(i) {
            self.index.insert(moved.clone(), i);
        }
        Some(record)
    }

    fn clear(&mut self) {
        self.paths.clear();
        self.index.clear();
        self.records.clear();
    }
}

struct Actor {
    did: String,
    handle: String,
    display_name: String,
    clock_id: u16,
    /// 0 = not yet announced, 1 = #identity sent, 2 = #account sent, 3 = profile committed.
    intro: u8,
    status: Status,
    rev: Option<String>,
    data: Option<Cid>,
    live: LiveSet,
    posts: Vec<String>,
    lists: Vec<String>,
}

impl Actor {
    fn uri(&self, path: &str) -> String {
        let mut uri = String::with_capacity(6 + self.did.len() + path.len());
        uri.push_str("at://");
        uri.push_str(&self.did);
        uri.push('/');
        uri.push_str(path);
        uri
    }
}

/// One op of a commit being built; `record: None` deletes.
struct PendingOp {
    collection: &'static str,
    rkey: String,
    record: Option<(Value, RecordLink, Option<StrongRef>)>,
}

const WORDS: &[&str] = &[
    "sky",
    "river",
    "cloud",
    "garden",
    "coffee",
    "morning",
    "signal",
    "quiet",
    "orbit",
    "maple",
    "harbor",
    "pixel",
    "lantern",
    "meadow",
    "thunder",
    "café",
    "naïve",
    "über",
    "日本語",
    "🌊",
    "🎉",
    "protocol",
    "firehose",
    "relay",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
];
const LANGS: &[&str] = &["en", "ja", "de", "pt", "es", "fr"];
const BASE32_LOWER: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const RECENT: usize = 2048;

pub struct Network {
    cfg: SimConfig,
    rng: SplitMix64,
    seq: i64,
    actors: Vec<Actor>,
    by_did: FastMap<String, usize>,
    follows: FastSet<(usize, usize)>,
    /// `created_at` of the event being generated, formatted once per event.
    now: String,
    /// Accounts that must act next (new joiners being announced).
    forced: VecDeque<usize>,
    inactive: Vec<usize>,
    recent_posts: VecDeque<StrongRef>,
    recent_reposts: VecDeque<StrongRef>,
    recent_lists: VecDeque<String>,
    handle_counter: u64,
}

impl Network {
    pub fn new(cfg: SimConfig) -> Self {
        let mut net = Network {
            rng: SplitMix64::new(cfg.seed),
            cfg,
            seq: 0,
            actors: Vec::new(),
            by_did: FastMap::default(),
            follows: FastSet::default(),
            now: String::new(),
            forced: VecDeque::new(),
            inactive: Vec::new(),
            recent_posts: VecDeque::new(),
            recent_reposts: VecDeque::new(),
            recent_lists: VecDeque::new(),
            handle_counter: 0,
        };
        for _ in 0..net.cfg.accounts.max(2) {
            net.add_actor();
        }
        net
    }

    /// Seq of the last event generated (0 before the first).
    pub fn head_seq(&self) -> i64 {
        self.seq
    }

    fn add_actor(&mut self) -> usize {
        let mut did = String::with_capacity(32);
        did.push_str("did:plc:");
        for _ in 0..24 {
            did.push(BASE32_LOWER[self.rng.below(32)] as char);
        }
        let idx = self.actors.len();
        let handle = self.new_handle();
        let display_name = format!("{} {}", capitalize(NAMES[idx % NAMES.len()]), idx);
        self.by_did.insert(did.clone(), idx);
        self.actors.push(Actor {
            did,
            handle,
            display_name,
            clock_id: (idx % 1024) as u16,
            intro: 0,
            status: Status::Active,
            rev: None,
            data: None,
            live: LiveSet::default(),
            posts: Vec::new(),
            lists: Vec::new(),
        });
        idx
    }

    fn new_handle(&mut self) -> String {
        self.handle_counter += 1;
        let name = NAMES[self.rng.below(NAMES.len())];
        format!("{name}{}.sim.test", self.handle_counter)
    }

    fn now_micros(&self) -> i64 {
        self.cfg.start_time_micros + self.seq * self.cfg.step_micros.max(4)
    }

    pub fn next_frame(&mut self) -> (i64, Vec<u8>) {
        let event = self.next_event();
        (self.seq, wire::encode_frame(&event))
    }

    pub fn next_event(&mut self) -> Event {
        self.seq += 1;
        self.now = rfc3339(self.now_micros());
        if self.rng.chance(self.cfg.join_probability) {
            let idx = self.add_actor();
            self.forced.push_back(idx);
        }
        if let Some(&idx) = self.forced.front() {
            let event = self.intro_step(idx);
            if self.actors.get(idx).is_some_and(|a| a.intro >= 3) {
                self.forced.pop_front();
            }
            return event;
        }
        let idx = self.pick_acting_actor();
        if self.actors.get(idx).is_some_and(|a| a.intro < 3) {
            return self.intro_step(idx);
        }
        self.random_event(idx)
    }

    /// A random account that may act: not deleted, not deactivated or taken down.
    fn pick_acting_actor(&mut self) -> usize {
        for _ in 0..16 {
            let idx = self.rng.below(self.actors.len());
            if self
                .actors
                .get(idx)
                .is_some_and(|a| a.status == Status::Active)
            {
                return idx;
            }
        }
        // Statuses are rare, so this only happens in tiny networks: grow instead.
        self.add_actor()
    }

    fn intro_step(&mut self, idx: usize) -> Event {
        let (seq, time) = (self.seq, self.created_at());
        let Some(actor) = self.actors.get_mut(idx) else {
            return self.sync_event(0);
        };
        actor.intro += 1;
        match actor.intro {
            1 => Event::Identity(Identity {
                seq,
                did: actor.did.clone(),
                time,
                handle: Some(actor.handle.clone()),
            }),
            2 => Event::Account(Account {
                seq,
                did: actor.did.clone(),
                time,
                active: true,
                status: None,
            }),
            _ => {
                let record = records::profile(
                    &actor.display_name,
                    "Posting from the simulated network.",
                    &time,
                );
                self.commit(
                    idx,
                    vec![PendingOp::create(
                        "app.bsky.actor.profile",
                        "self".into(),
                        record,
                        RecordLink::None,
                    )],
                )
            }
        }
    }

    fn random_event(&mut self, acting: usize) -> Event {
        let roll = self.rng.unit();
        // List maintenance is done by the few accounts that curate lists.
        let idx = if (0.90..0.924).contains(&roll) {
            self.list_curator(acting)
        } else {
            acting
        };
        let ops = match roll {
            r if r < 0.48 => self.like_ops(idx),
            r if r < 0.63 => self.post_ops(idx),
            r if r < 0.71 => self.repost_op(idx),
            r if r < 0.81 => self.follow_op(idx),
            r if r < 0.87 => self.delete_op(idx),
            r if r < 0.885 => self.block_op(idx),
            r if r < 0.895 => self.profile_update_op(idx),
            r if r < 0.90 => self.list_op(idx),
            r if r < 0.915 => self.list_item_op(idx),
            r if r < 0.918 => self.list_block_op(idx),
            r if r < 0.921 => self.generator_op(idx),
            r if r < 0.924 => self.starter_pack_op(idx),
            r if r < 0.93 => self.gate_op(idx, "app.bsky.feed.threadgate"),
            r if r < 0.935 => self.gate_op(idx, "app.bsky.feed.postgate"),
            r if r < 0.9355 => self.self_record_op("app.bsky.labeler.service"),
            r if r < 0.938 => self.verification_op(idx),
            r if r < 0.94 => self.self_record_op("app.bsky.actor.status"),
            r if r < 0.944 => return self.handle_change(idx),
            r if r < 0.946 => return self.account_change(idx, Status::Deactivated),
            r if r < 0.948 => return self.reactivate(),
            r if r < 0.949 => return self.account_change(idx, Status::Takendown),
            r if r < 0.950 => return self.account_change(idx, Status::Deleted),
            r if r < 0.952 => return self.sync_event(idx),
            _ => self.like_ops(idx),
        };
        let ops = if ops.is_empty() {
            self.like_ops(idx)
        } else {
            ops
        };
        if ops.is_empty() {
            // Nothing to like yet (no posts anywhere): start the conversation.
            let ops = self.post_ops(idx);
            return self.commit(idx, ops);
        }
        self.commit(idx, ops)
    }

    fn created_at(&self) -> String {
        self.now.clone()
    }

    fn rkey(&self, idx: usize, op_index: i64) -> String {
        let clock_id = self.actors.get(idx).map_or(0, |a| a.clock_id);
        tid(self.now_micros() + op_index, clock_id)
    }

    /// A post to interact with: usually by a popular author, else a recent one.
    fn pick_post(&mut self) -> Option<StrongRef> {
        for _ in 0..4 {
            let author = self.rng.skewed(self.actors.len());
            let Some(actor) = self.actors.get(author) else {
                continue;
            };
            if actor.status == Status::Deleted || actor.posts.is_empty() {
                continue;
            }
            let path = actor.posts.get(self.rng.below(actor.posts.len()))?;
            let record = actor.live.get(path)?;
            return Some(StrongRef {
                uri: actor.uri(path),
                cid: record.cid,
            });
        }
        if self.recent_posts.is_empty() {
            return None;
        }
        self.recent_posts
            .get(self.rng.below(self.recent_posts.len()))
            .cloned()
    }

    fn like_ops(&mut self, idx: usize) -> Vec<PendingOp> {
        // A few likes land in one commit, as clients batch them occasionally.
        let n = if self.rng.chance(0.03) {
            2 + self.rng.below(2)
        } else {
            1
        };
        let mut ops = Vec::new();
        for i in 0..n {
            let Some(subject) = self.pick_post() else {
                break;
            };
            let via = self.maybe_via();
            let record = records::subject_ref(
                "app.bsky.feed.like",
                &subject,
                via.as_ref(),
                &self.created_at(),
            );
            let link = RecordLink::Like {
                subject: subject.uri,
            };
            ops.push(PendingOp::create(
                "app.bsky.feed.like",
                self.rkey(idx, i as i64),
                record,
                link,
            ));
        }
        ops
    }

    fn maybe_via(&mut self) -> Option<StrongRef> {
        if self.recent_reposts.is_empty() || !self.rng.chance(0.1) {
            return None;
        }
        self.recent_reposts
            .get(self.rng.below(self.recent_reposts.len()))
            .cloned()
    }

    fn repost_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(subject) = self.pick_post() else {
            return Vec::new();
        };
        let via = self.maybe_via();
        let record = records::subject_ref(
            "app.bsky.feed.repost",
            &subject,
            via.as_ref(),
            &self.created_at(),
        );
        let link = RecordLink::Repost {
            subject: subject.uri,
        };
        vec![PendingOp::create(
            "app.bsky.feed.repost",
            self.rkey(idx, 0),
            record,
            link,
        )]
    }

    fn post_ops(&mut self, idx: usize) -> Vec<PendingOp> {
        let created_at = self.created_at();
        let (text, facets) = self.post_text();
        let langs = vec![LANGS[self.rng.skewed(LANGS.len())]];
        let mut reply = None;
        let mut parent_uri = None;
        if self.rng.chance(0.3) {
            if let Some(parent) = self.pick_post() {
                let root = self.root_of(&parent).unwrap_or_else(|| parent.clone());
                parent_uri = Some(parent.uri.clone());
                reply = Some((root, parent));
            }
        }
        let mut quote_uri = None;
        let embed = match self.rng.below(10) {
            0 | 1 => Some(self.images()),
            2 => Some(records::external_embed(
                "https://news.sim.test/story",
                "A story",
                "Something happened",
            )),
            3 => self.pick_post().map(|q| {
                quote_uri = Some(q.uri.clone());
                records::record_embed(&q)
            }),
            4 if self.rng.chance(0.5) => self.pick_post().map(|q| {
                quote_uri = Some(q.uri.clone());
                let media = self.images();
                records::record_with_media_embed(&q, media)
            }),
            _ => None,
        };
        let root = reply.as_ref().map(|(root, _)| root.clone());
        let record = records::post(
            PostParts {
                text,
                facets,
                langs,
                reply,
                embed,
            },
            &created_at,
        );
        let rkey = self.rkey(idx, 0);
        let link = RecordLink::Post {
            parent: parent_uri,
            quote: quote_uri,
        };
        let mut ops = vec![PendingOp {
            collection: "app.bsky.feed.post",
            rkey: rkey.clone(),
            record: Some((record, link, root)),
        }];
        // Occasionally the gates are written in the same commit as the post.
        if self.rng.chance(0.03) {
            let uri = self
                .actors
                .get(idx)
                .map(|a| a.uri(&format!("app.bsky.feed.post/{rkey}")))
                .unwrap_or_default();
            ops.push(PendingOp::create(
                "app.bsky.feed.threadgate",
                rkey.clone(),
                records::threadgate(&uri, &created_at),
                RecordLink::None,
            ));
            if self.rng.chance(0.5) {
                ops.push(PendingOp::create(
                    "app.bsky.feed.postgate",
                    rkey,
                    records::postgate(&uri, &created_at),
                    RecordLink::None,
                ));
            }
        }
        ops
    }

    fn root_of(&self, post: &StrongRef) -> Option<StrongRef> {
        let rest = post.uri.strip_prefix("at://")?;
        let (did, path) = rest.split_once('/')?;
        let actor = self.actors.get(*self.by_did.get(did)?)?;
        actor.live.get(path)?.root.clone()
    }

    fn images(&mut self) -> Value {
        let n = 1 + self.rng.below(3);
        let images = (0..n)
            .map(|_| {
                (
                    records::blob(self.rng.next_u64(), 50_000 + self.rng.below(900_000) as i64),
                    "a picture",
                )
            })
            .collect();
        records::images_embed(images)
    }

    /// Post text with facets whose byte offsets index the UTF-8 text.
    fn post_text(&mut self) -> (String, Vec<Value>) {
        let mut text = String::new();
        let mut facets = Vec::new();
        let words = 3 + self.rng.below(10);
        for i in 0..words {
            if i > 0 {
                text.push(' ');
            }
            let start = text.len();
            match self.rng.below(20) {
                0 => {
                    let target = self.rng.below(self.actors.len());
                    if let Some(a) = self.actors.get(target).filter(|a| a.intro >= 1) {
                        text.push('@');
                        text.push_str(&a.handle);
                        facets.push(records::facet(
                            start,
                            text.len(),
                            Feature::Mention(a.did.clone()),
                        ));
                        continue;
                    }
                    text.push_str(WORDS[self.rng.below(WORDS.len())]);
                }
                1 => {
                    let uri = format!("https://example.sim.test/{}", self.rng.below(1000));
                    text.push_str(&uri);
                    facets.push(records::facet(start, text.len(), Feature::Link(uri)));
                }
                2 => {
                    let tag = WORDS[self.rng.below(WORDS.len())];
                    text.push('#');
                    text.push_str(tag);
                    facets.push(records::facet(
                        start,
                        text.len(),
                        Feature::Tag(tag.to_owned()),
                    ));
                }
                _ => text.push_str(WORDS[self.rng.below(WORDS.len())]),
            }
        }
        (text, facets)
    }

    fn follow_op(&mut self, idx: usize) -> Vec<PendingOp> {
        for _ in 0..4 {
            let target = self.rng.skewed(self.actors.len());
            let Some(t) = self.actors.get(target) else {
                continue;
            };
            if target == idx
                || t.intro < 1
                || t.status == Status::Deleted
                || self.follows.contains(&(idx, target))
            {
                continue;
            }
            let subject = t.did.clone();
            self.follows.insert((idx, target));
            let record =
                records::subject_did("app.bsky.graph.follow", &subject, &self.created_at());
            return vec![PendingOp::create(
                "app.bsky.graph.follow",
                self.rkey(idx, 0),
                record,
                RecordLink::Follow { subject },
            )];
        }
        Vec::new()
    }

    fn random_other(&mut self, idx: usize) -> Option<usize> {
        let target = self.rng.below(self.actors.len());
        let t = self.actors.get(target)?;
        (target != idx && t.intro >= 1 && t.status != Status::Deleted).then_some(target)
    }

    fn block_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(target) = self.random_other(idx) else {
            return Vec::new();
        };
        let subject = self
            .actors
            .get(target)
            .map(|a| a.did.clone())
            .unwrap_or_default();
        let record = records::subject_did("app.bsky.graph.block", &subject, &self.created_at());
        vec![PendingOp::create(
            "app.bsky.graph.block",
            self.rkey(idx, 0),
            record,
            RecordLink::None,
        )]
    }

    fn delete_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(actor) = self.actors.get(idx) else {
            return Vec::new();
        };
        if actor.live.paths.is_empty() {
            return Vec::new();
        }
        let Some(path) = actor.live.paths.get(self.rng.below(actor.live.paths.len())) else {
            return Vec::new();
        };
        let Some((collection, rkey)) = path.split_once('/') else {
            return Vec::new();
        };
        let Some(collection) = static_collection(collection) else {
            return Vec::new();
        };
        vec![PendingOp {
            collection,
            rkey: rkey.to_owned(),
            record: None,
        }]
    }

    fn profile_update_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(actor) = self.actors.get(idx) else {
            return Vec::new();
        };
        let description = format!("Updated at {}", self.created_at());
        let record = records::profile(&actor.display_name, &description, &self.created_at());
        vec![PendingOp::create(
            "app.bsky.actor.profile",
            "self".into(),
            record,
            RecordLink::None,
        )]
    }

    /// The owner of a recent list, when it can act; otherwise `fallback`.
    fn list_curator(&mut self, fallback: usize) -> usize {
        if self.recent_lists.is_empty() {
            return fallback;
        }
        let Some(uri) = self
            .recent_lists
            .get(self.rng.below(self.recent_lists.len()))
        else {
            return fallback;
        };
        let owner = uri
            .strip_prefix("at://")
            .and_then(|rest| rest.split('/').next());
        match owner.and_then(|did| self.by_did.get(did)).copied() {
            Some(owner)
                if self.actors.get(owner).is_some_and(|a| {
                    a.status == Status::Active && a.intro >= 3 && !a.lists.is_empty()
                }) =>
            {
                owner
            }
            _ => fallback,
        }
    }

    fn list_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let purpose = if self.rng.chance(0.3) {
            "app.bsky.graph.defs#modlist"
        } else {
            "app.bsky.graph.defs#curatelist"
        };
        let record = records::list(
            purpose,
            "My list",
            "People worth reading",
            &self.created_at(),
        );
        vec![PendingOp::create(
            "app.bsky.graph.list",
            self.rkey(idx, 0),
            record,
            RecordLink::None,
        )]
    }

    fn own_list_uri(&mut self, idx: usize) -> Option<String> {
        let actor = self.actors.get(idx)?;
        let path = actor.lists.get(self.rng.below(actor.lists.len().max(1)))?;
        Some(actor.uri(path))
    }

    fn list_item_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(list_uri) = self.own_list_uri(idx) else {
            return self.list_op(idx);
        };
        let Some(target) = self.random_other(idx) else {
            return Vec::new();
        };
        let subject = self
            .actors
            .get(target)
            .map(|a| a.did.clone())
            .unwrap_or_default();
        let record = records::list_item(&subject, &list_uri, &self.created_at());
        vec![PendingOp::create(
            "app.bsky.graph.listitem",
            self.rkey(idx, 0),
            record,
            RecordLink::None,
        )]
    }

    fn list_block_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(own_did) = self.actors.get(idx).map(|a| format!("at://{}/", a.did)) else {
            return Vec::new();
        };
        let Some(list_uri) = self
            .recent_lists
            .get(self.rng.below(self.recent_lists.len().max(1)))
            .cloned()
        else {
            return Vec::new();
        };
        if list_uri.starts_with(&own_did) {
            return Vec::new();
        }
        let record = records::list_block(&list_uri, &self.created_at());
        vec![PendingOp::create(
            "app.bsky.graph.listblock",
            self.rkey(idx, 0),
            record,
            RecordLink::None,
        )]
    }

    fn generator_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let record = records::generator(
            "did:web:feeds.sim.test",
            "Sim Feed",
            "The best of the simulated network",
            &self.created_at(),
        );
        vec![PendingOp::create(
            "app.bsky.feed.generator",
            self.rkey(idx, 0),
            record,
            RecordLink::None,
        )]
    }

    fn starter_pack_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(list_uri) = self.own_list_uri(idx) else {
            return self.list_op(idx);
        };
        let feeds = if self.rng.chance(0.5) {
            vec![format!(
                "at://{}/app.bsky.feed.generator/sim",
                self.actors.get(idx).map_or("", |a| a.did.as_str())
            )]
        } else {
            Vec::new()
        };
        let record = records::starter_pack("Welcome pack", &list_uri, feeds, &self.created_at());
        vec![PendingOp::create(
            "app.bsky.graph.starterpack",
            self.rkey(idx, 0),
            record,
            RecordLink::None,
        )]
    }

    /// Threadgates and postgates share the rkey of the post they gate.
    fn gate_op(&mut self, idx: usize, collection: &'static str) -> Vec<PendingOp> {
        let Some(actor) = self.actors.get(idx) else {
            return Vec::new();
        };
        let Some(post_path) = actor.posts.get(self.rng.below(actor.posts.len().max(1))) else {
            return Vec::new();
        };
        let Some((_, rkey)) = post_path.split_once('/') else {
            return Vec::new();
        };
        let uri = actor.uri(post_path);
        let rkey = rkey.to_owned();
        let created_at = self.created_at();
        let record = if collection == "app.bsky.feed.threadgate" {
            records::threadgate(&uri, &created_at)
        } else {
            records::postgate(&uri, &created_at)
        };
        vec![PendingOp::create(
            collection,
            rkey,
            record,
            RecordLink::None,
        )]
    }

    fn self_record_op(&mut self, collection: &'static str) -> Vec<PendingOp> {
        let created_at = self.created_at();
        let record = if collection == "app.bsky.labeler.service" {
            records::labeler_service(&created_at)
        } else {
            records::actor_status(30 + self.rng.below(240) as i64, &created_at)
        };
        vec![PendingOp::create(
            collection,
            "self".into(),
            record,
            RecordLink::None,
        )]
    }

    fn verification_op(&mut self, idx: usize) -> Vec<PendingOp> {
        let Some(target) = self.random_other(idx) else {
            return Vec::new();
        };
        let Some(t) = self.actors.get(target) else {
            return Vec::new();
        };
        let record = records::verification(&t.did, &t.handle, &t.display_name, &self.created_at());
        vec![PendingOp::create(
            "app.bsky.graph.verification",
            self.rkey(idx, 0),
            record,
            RecordLink::None,
        )]
    }

    fn handle_change(&mut self, idx: usize) -> Event {
        let handle = self.new_handle();
        let (seq, time) = (self.seq, self.created_at());
        let Some(actor) = self.actors.get_mut(idx) else {
            return self.sync_event(0);
        };
        actor.handle = handle.clone();
        Event::Identity(Identity {
            seq,
            did: actor.did.clone(),
            time,
            handle: Some(handle),
        })
    }

    fn account_change(&mut self, idx: usize, status: Status) -> Event {
        let (seq, time) = (self.seq, self.created_at());
        let Some(actor) = self.actors.get_mut(idx) else {
            return self.sync_event(0);
        };
        actor.status = status;
        if status == Status::Deleted {
            // A deleted account's records are gone; it never acts again.
            actor.live.clear();
            actor.posts.clear();
            actor.lists.clear();
            self.follows.retain(|(a, _)| *a != idx);
        } else {
            self.inactive.push(idx);
        }
        Event::Account(Account {
            seq,
            did: actor.did.clone(),
            time,
            active: false,
            status: Some(status.as_str().to_owned()),
        })
    }

    fn reactivate(&mut self) -> Event {
        let (seq, time) = (self.seq, self.created_at());
        while !self.inactive.is_empty() {
            let idx = self
                .inactive
                .swap_remove(self.rng.below(self.inactive.len()));
            if let Some(actor) = self
                .actors
                .get_mut(idx)
                .filter(|a| matches!(a.status, Status::Deactivated | Status::Takendown))
            {
                actor.status = Status::Active;
                return Event::Account(Account {
                    seq,
                    did: actor.did.clone(),
                    time,
                    active: true,
                    status: None,
                });
            }
        }
        let idx = self.pick_acting_actor();
        self.sync_event(idx)
    }

    /// A `#sync` announcing the repo's current commit (truth is unchanged).
    fn sync_event(&mut self, idx: usize) -> Event {
        let (seq, time, micros) = (self.seq, self.created_at(), self.now_micros());
        let sig = self.signature();
        let Some(actor) = self.actors.get_mut(idx) else {
            return Event::Info(wire::Info {
                name: "Empty".into(),
                message: None,
            });
        };
        let rev = tid(micros, actor.clock_id);
        let data = actor
            .data
            .unwrap_or_else(|| Cid::for_dag_cbor(&wire::encode(&mst_node(&[]))));
        let commit = commit_object(&actor.did, data, &rev, sig);
        let commit_cid = Cid::for_dag_cbor(&commit);
        actor.rev = Some(rev.clone());
        Event::Sync(Sync {
            seq,
            did: actor.did.clone(),
            rev,
            blocks: wire::write_car(&[commit_cid], &[(commit_cid, commit)]),
            time,
        })
    }

    fn signature(&mut self) -> Vec<u8> {
        (0..8)
            .flat_map(|_| self.rng.next_u64().to_be_bytes())
            .collect()
    }

    /// Applies ops to the repo and the truth, and wraps them in a `#commit` event.
    fn commit(&mut self, idx: usize, ops: Vec<PendingOp>) -> Event {
        let (seq, time, micros) = (self.seq, self.created_at(), self.now_micros());
        let sig = self.signature();
        let Some(actor) = self.actors.get_mut(idx) else {
            return self.sync_event(0);
        };
        let rev = tid(micros, actor.clock_id);
        let mut blocks: Vec<(Cid, Vec<u8>)> = Vec::with_capacity(ops.len() + 2);
        let mut repo_ops = Vec::with_capacity(ops.len());
        let mut entries = Vec::with_capacity(ops.len());
        for op in ops {
            let mut path = String::with_capacity(op.collection.len() + 1 + op.rkey.len());
            path.push_str(op.collection);
            path.push('/');
            path.push_str(&op.rkey);
            let prev = actor.live.get(&path).map(|r| r.cid);
            match op.record {
                Some((record, link, root)) => {
                    let bytes = wire::encode(&record);
                    let cid = Cid::for_dag_cbor(&bytes);
                    blocks.push((cid, bytes));
                    let action = if prev.is_some() {
                        OpAction::Update
                    } else {
                        OpAction::Create
                    };
                    if op.collection == "app.bsky.feed.post" && prev.is_none() {
                        actor.posts.push(path.clone());
                        let this = StrongRef {
                            uri: actor.uri(&path),
                            cid,
                        };
                        push_recent(&mut self.recent_posts, this);
                    }
                    if op.collection == "app.bsky.feed.repost" {
                        push_recent(
                            &mut self.recent_reposts,
                            StrongRef {
                                uri: actor.uri(&path),
                                cid,
                            },
                        );
                    }
                    if op.collection == "app.bsky.graph.list" && prev.is_none() {
                        actor.lists.push(path.clone());
                        push_recent(&mut self.recent_lists, actor.uri(&path));
                    }
                    // A post's thread root is its own reply root, or itself.
                    let root = match (&link, root) {
                        (RecordLink::Post { .. }, Some(root)) => Some(root),
                        (RecordLink::Post { .. }, None) => Some(StrongRef {
                            uri: actor.uri(&path),
                            cid,
                        }),
                        _ => None,
                    };
                    actor.live.put(path.clone(), LiveRecord { cid, link, root });
                    entries.push((path.clone(), Some(cid)));
                    repo_ops.push(RepoOp {
                        action,
                        path,
                        cid: Some(cid),
                        prev,
                    });
                }
                None => {
                    let Some(removed) = actor.live.remove(&path) else {
                        continue;
                    };
                    match &removed.link {
                        RecordLink::Post { .. } => actor.posts.retain(|p| *p != path),
                        RecordLink::Follow { subject } => {
                            if let Some(&target) = self.by_did.get(subject) {
                                self.follows.remove(&(idx, target));
                            }
                        }
                        _ => {}
                    }
                    if op.collection == "app.bsky.graph.list" {
                        actor.lists.retain(|p| *p != path);
                    }
                    entries.push((path.clone(), None));
                    repo_ops.push(RepoOp {
                        action: OpAction::Delete,
                        path,
                        cid: None,
                        prev: Some(removed.cid),
                    });
                }
            }
        }
        let node = wire::encode(&mst_node(&entries));
        let data = Cid::for_dag_cbor(&node);
        let commit = commit_object(&actor.did, data, &rev, sig);
        let commit_cid = Cid::for_dag_cbor(&commit);
        let mut car_blocks = Vec::with_capacity(blocks.len() + 2);
        car_blocks.push((commit_cid, commit));
        car_blocks.push((data, node));
        car_blocks.extend(blocks);
        let since = actor.rev.replace(rev.clone());
        let prev_data = actor.data.replace(data);
        Event::Commit(Commit {
            seq,
            repo: actor.did.clone(),
            rev,
            since,
            time,
            commit: commit_cid,
            blocks: wire::write_car(&[commit_cid], &car_blocks),
            ops: repo_ops,
            blobs: Vec::new(),
            too_big: false,
            rebase: false,
            prev_data,
        })
    }

    /// The state after every event generated so far.
    pub fn truth(&self) -> GroundTruth {
        let appeared = self.actors.iter().filter(|a| a.intro >= 1);
        let actors = appeared
            .clone()
            .map(|a| (a.did.as_str(), Some(a.handle.as_str()), a.status.as_str()));
        let records = appeared.flat_map(|a| {
            a.live
                .paths
                .iter()
                .zip(a.live.records.iter())
                .map(move |(path, r)| (a.uri(path), a.did.as_str(), r.cid.to_string(), &r.link))
        });
        truth::build(actors, records)
    }
}

impl PendingOp {
    fn create(collection: &'static str, rkey: String, record: Value, link: RecordLink) -> Self {
        PendingOp {
            collection,
            rkey,
            record: Some((record, link, None)),
        }
    }
}

fn push_recent<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= RECENT {
        queue.pop_front();
    }
    queue.push_back(item);
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

const COLLECTIONS: &[&str] = &[
    "app.bsky.actor.profile",
    "app.bsky.actor.status",
    "app.bsky.feed.like",
    "app.bsky.feed.post",
    "app.bsky.feed.repost",
    "app.bsky.feed.generator",
    "app.bsky.feed.threadgate",
    "app.bsky.feed.postgate",
    "app.bsky.graph.follow",
    "app.bsky.graph.block",
    "app.bsky.graph.list",
    "app.bsky.graph.listitem",
    "app.bsky.graph.listblock",
    "app.bsky.graph.starterpack",
    "app.bsky.graph.verification",
    "app.bsky.labeler.service",
];

fn static_collection(name: &str) -> Option<&'static str> {
    COLLECTIONS.iter().copied().find(|c| *c == name)
}

/// A single MST-shaped node listing the keys this commit touched; the sim does
/// not maintain a full tree, only a node with the real layout.
fn mst_node(entries: &[(String, Option<Cid>)]) -> Value {
    let e = entries
        .iter()
        .filter_map(|(path, cid)| {
            cid.map(|cid| {
                Value::map([
                    ("k", Value::Bytes(path.as_bytes().to_vec())),
                    ("p", Value::Integer(0)),
                    ("t", Value::Null),
                    ("v", Value::Link(cid)),
                ])
            })
        })
        .collect();
    Value::map([("e", Value::List(e)), ("l", Value::Null)])
}

fn commit_object(did: &str, data: Cid, rev: &str, sig: Vec<u8>) -> Vec<u8> {
    wire::encode(&Value::map([
        ("did", Value::from(did)),
        ("version", Value::Integer(3)),
        ("data", Value::Link(data)),
        ("rev", Value::from(rev)),
        ("prev", Value::Null),
        ("sig", Value::Bytes(sig)),
    ]))
}

/// The first `n` frames of the network for `cfg`, and the truth after them.
pub fn generate(cfg: &SimConfig, n: usize) -> (Vec<Vec<u8>>, GroundTruth) {
    let mut net = Network::new(cfg.clone());
    let frames = (0..n).map(|_| net.next_frame().1).collect();
    (frames, net.truth())
}
