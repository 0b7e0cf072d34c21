//! Repository and account events: commits (blocks, CIDs, revs, the truth's
//! live set), #sync, #identity and #account changes.

use skyhose_proto::mst::Mst;
use skyhose_proto::repo::Commit as RepoCommit;

use super::live::LiveRecord;
use super::{push_recent, Actor, Network, PendingOp, SimConfig, Status};
use crate::clock::tid;
use crate::plc;
use crate::records::StrongRef;
use crate::truth::RecordLink;
use crate::wire::{self, Account, Cid, Commit, Event, Identity, OpAction, RepoOp, Sync};

impl Network {
    pub(super) fn handle_change(&mut self, idx: usize) -> Event {
        let rate = self.cfg.faults.identity_without_handle;
        let without_handle = rate > 0.0 && self.rng.chance(rate);
        let handle = (!without_handle).then(|| self.new_handle());
        let (seq, time) = (self.seq, self.created_at());
        let Some(actor) = self.actors.get_mut(idx) else {
            return self.sync_event(0);
        };
        if let Some(handle) = &handle {
            actor.handle = handle.clone();
        }
        Event::Identity(Identity {
            seq,
            did: actor.did.clone(),
            time,
            handle,
        })
    }

    pub(super) fn account_change(&mut self, idx: usize, status: Status) -> Event {
        let (seq, time) = (self.seq, self.created_at());
        let Some(actor) = self.actors.get_mut(idx) else {
            return self.sync_event(0);
        };
        actor.status = status;
        if status == Status::Deleted {
            // A deleted account's records are gone; it never acts again.
            actor.live.clear();
            actor.repo = Mst::new();
            actor.data = None;
            actor.head = None;
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

    pub(super) fn reactivate(&mut self) -> Event {
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

    /// A `#sync` announcing the repo's current commit (with the
    /// `sync_divergence` fault, after silently dropping one of its records).
    pub(super) fn sync_event(&mut self, idx: usize) -> Event {
        let rate = self.cfg.faults.sync_divergence;
        if rate > 0.0 && self.rng.chance(rate) {
            let path = self.actors.get(idx).and_then(|a| {
                a.live
                    .paths
                    .get(self.rng.below(a.live.paths.len().max(1)))
                    .cloned()
            });
            if let Some(path) = path {
                self.forget(idx, &path);
            }
        }
        let (seq, time, micros) = (self.seq, self.created_at(), self.now_micros());
        self.keep_sequence();
        let Some(actor) = self.actors.get_mut(idx) else {
            return Event::Info(wire::Info {
                name: "Empty".into(),
                message: None,
            });
        };
        let rev = tid(micros, actor.clock_id);
        let (commit_cid, commit) = actor.sign_head(&self.cfg, rev.clone());
        Event::Sync(Sync {
            seq,
            did: actor.did.clone(),
            rev,
            blocks: wire::write_car(&[commit_cid], &[(commit_cid, commit)]),
            time,
        })
    }

    /// Eight draws per commit, as many as its signature once took from the
    /// generator, so a seed keeps giving the same accounts and records whatever
    /// the commit format.
    fn keep_sequence(&mut self) {
        for _ in 0..8 {
            self.rng.next_u64();
        }
    }

    /// Removes a record from the repo and the truth, with no event: what a
    /// delete op does, and what a repo that diverged from its firehose lost.
    fn forget(&mut self, idx: usize, path: &str) -> Option<LiveRecord> {
        let actor = self.actors.get_mut(idx)?;
        let removed = actor.live.remove(path)?;
        actor.repo.remove(path);
        match &removed.link {
            RecordLink::Post { .. } => actor.posts.retain(|p| p != path),
            RecordLink::Follow { subject } => {
                if let Some(&target) = self.by_did.get(subject) {
                    self.follows.remove(&(idx, target));
                }
            }
            _ => {}
        }
        if path.starts_with("app.bsky.graph.list/") {
            actor.lists.retain(|p| p != path);
        }
        Some(removed)
    }

    /// Applies ops to the repo and the truth, and wraps them in a `#commit` event.
    pub(super) fn commit(&mut self, idx: usize, ops: Vec<PendingOp>) -> Event {
        let (seq, time, micros) = (self.seq, self.created_at(), self.now_micros());
        self.keep_sequence();
        let forge_rate = self.cfg.faults.bad_signature;
        let forged = !self.quiet && forge_rate > 0.0 && self.rng.chance(forge_rate);
        let mut blocks: Vec<(Cid, Vec<u8>)> = Vec::with_capacity(ops.len() + 2);
        let mut repo_ops = Vec::with_capacity(ops.len());
        for op in ops {
            let Some(actor) = self.actors.get_mut(idx) else {
                return self.sync_event(0);
            };
            let mut path = String::with_capacity(op.collection.len() + 1 + op.rkey.len());
            path.push_str(op.collection);
            path.push('/');
            path.push_str(&op.rkey);
            let prev = actor.live.get(&path).map(|r| r.cid);
            match op.record {
                Some((record, link, root)) => {
                    let bytes = wire::encode(&record);
                    let cid = Cid::for_dag_cbor(&bytes);
                    if !self.quiet {
                        blocks.push((cid, bytes.clone()));
                    }
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
                    if op.collection == "app.bsky.feed.threadgate" {
                        let mut post = String::with_capacity(19 + op.rkey.len());
                        post.push_str("app.bsky.feed.post/");
                        post.push_str(&op.rkey);
                        self.gated_roots.insert(actor.uri(&post));
                    }
                    if let (RecordLink::Post { .. }, Some(reply_root)) = (&link, &root) {
                        self.replied_roots.insert(reply_root.uri.clone());
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
                    actor.repo.insert(path.clone(), cid);
                    actor.live.put(
                        path.clone(),
                        LiveRecord {
                            cid,
                            link,
                            root,
                            block: bytes.into_boxed_slice(),
                        },
                    );
                    repo_ops.push(RepoOp {
                        action,
                        path,
                        cid: Some(cid),
                        prev,
                    });
                }
                None => {
                    let Some(removed) = self.forget(idx, &path) else {
                        continue;
                    };
                    repo_ops.push(RepoOp {
                        action: OpAction::Delete,
                        path,
                        cid: None,
                        prev: Some(removed.cid),
                    });
                }
            }
        }
        let Some(actor) = self.actors.get_mut(idx) else {
            return self.sync_event(0);
        };
        let rev = tid(micros, actor.clock_id);
        if self.quiet {
            // History: the head is signed once, when history ends.
            actor.rev = Some(rev);
            return Event::Info(wire::Info {
                name: "History".into(),
                message: None,
            });
        }
        let prev_data = actor.data;
        let since = actor.rev.clone();
        let (mut commit_cid, mut commit) = actor.sign_head(&self.cfg, rev.clone());
        if forged {
            let forger = plc::proto_signing_key(&self.cfg, "did:plc:forger");
            let (cid, bytes, _) =
                RepoCommit::signed(&actor.did, actor.repo.root(), &rev, None, &forger);
            (commit_cid, commit) = (cid, bytes);
        }
        let mut car_blocks = Vec::with_capacity(blocks.len() + 8);
        car_blocks.push((commit_cid, commit));
        car_blocks.extend(
            actor
                .repo
                .commit_blocks(repo_ops.iter().map(|op| op.path.as_str())),
        );
        car_blocks.extend(blocks);
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
}

impl Actor {
    /// Signs the repo's current state at `rev`, making it the head its host serves.
    pub(super) fn sign_head(&mut self, cfg: &SimConfig, rev: String) -> (Cid, Vec<u8>) {
        let data = self.repo.root();
        let key = self
            .key
            .get_or_insert_with(|| plc::proto_signing_key(cfg, &self.did));
        let (cid, bytes, _) = RepoCommit::signed(&self.did, data, &rev, None, key);
        self.data = Some(data);
        self.rev = Some(rev);
        self.head = Some((cid, bytes.clone()));
        (cid, bytes)
    }
}
