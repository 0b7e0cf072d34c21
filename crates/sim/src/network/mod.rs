//! The synthetic network: accounts, their repositories and the event mix.
//! Everything derives from `SimConfig` through one PRNG and a synthetic clock,
//! so a config always yields byte-identical frames.

mod content;
mod history;
mod hosting;
mod live;
mod repo;

use std::collections::VecDeque;

use live::LiveSet;

use crate::clock::tid;
use crate::fasthash::{FastMap, FastSet};
use crate::records::{self, StrongRef};
use crate::rng::SplitMix64;
use crate::truth::{self, GroundTruth, RecordLink};
use crate::wire::{self, Account, Cid, Event, Identity, Value};
use skyhose_proto::crypto::SigningKey;
use skyhose_proto::mst::Mst;

pub use hosting::{RepoListing, RepoUnavailable};

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
    /// Commits each initial account makes before the firehose window opens
    /// (each creates one to three records), so the network holds records no
    /// firehose event ever showed. 0: every account starts empty.
    pub history_commits_per_account: usize,
    /// Faults in the event stream; all off by default.
    pub faults: NetworkFaults,
}

/// Ways the network's own events misbehave, each a probability per chance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkFaults {
    /// Per commit: the frame's commit is signed with a key that is not the
    /// account's (the repo still changes; its host serves it properly signed).
    pub bad_signature: f64,
    /// Per `#sync`: before it, the repo silently loses one record, so it
    /// differs from what the firehose showed.
    pub sync_divergence: f64,
    /// Per handle change: an `#identity` without a handle, the handle unchanged.
    pub identity_without_handle: f64,
}

impl SimConfig {
    /// The synthetic time of the event with `seq`, in microseconds since the
    /// Unix epoch: the network's own clock, which starts at
    /// `start_time_micros` whatever the wall clock says.
    pub fn time_of_seq_micros(&self, seq: i64) -> i64 {
        self.start_time_micros + seq * self.step_micros.max(4)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            accounts: 1000,
            start_time_micros: 1_730_419_200_000_000, // 2024-11-01T00:00:00Z
            step_micros: 1000,
            join_probability: 0.001,
            history_commits_per_account: 0,
            faults: NetworkFaults::default(),
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
    /// The signed commit block at `rev`, as the account's host serves it.
    head: Option<(Cid, Vec<u8>)>,
    repo: Mst,
    /// Derived on first use: deriving a public key costs a scalar multiplication.
    key: Option<SigningKey>,
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
    /// Posts a threadgate was ever written for. No reply is written under
    /// them, and none was before (see `replied_roots`), so the truth, which
    /// counts every reply, stays exact whether an index sees a gate before or
    /// after the replies of its thread.
    gated_roots: FastSet<String>,
    /// Thread roots some reply ever referenced: never given a threadgate.
    replied_roots: FastSet<String>,
    handle_counter: u64,
    /// Generating history: commits change repos and the truth but make no events.
    quiet: bool,
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
            gated_roots: FastSet::default(),
            replied_roots: FastSet::default(),
            handle_counter: 0,
            quiet: false,
        };
        for _ in 0..net.cfg.accounts.max(2) {
            net.add_actor();
        }
        net.make_history();
        net
    }

    /// Seq of the last event generated (0 before the first).
    pub fn head_seq(&self) -> i64 {
        self.seq
    }

    /// Every account created so far, announced or not: DID and current handle.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.actors
            .iter()
            .map(|a| (a.did.as_str(), a.handle.as_str()))
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
            head: None,
            repo: Mst::new(),
            key: None,
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
        self.cfg.time_of_seq_micros(self.seq)
    }

    pub fn next_frame(&mut self) -> (i64, Vec<u8>) {
        let event = self.next_event();
        (self.seq, wire::encode_frame(&event))
    }

    pub fn next_event(&mut self) -> Event {
        self.tick();
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

/// The first `n` frames of the network for `cfg`, and the truth after them.
pub fn generate(cfg: &SimConfig, n: usize) -> (Vec<Vec<u8>>, GroundTruth) {
    let mut net = Network::new(cfg.clone());
    let frames = (0..n).map(|_| net.next_frame().1).collect();
    (frames, net.truth())
}
