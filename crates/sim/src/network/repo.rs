//! Repository and account events: commits (blocks, CIDs, revs, the truth's
//! live set), #sync, #identity and #account changes.

use super::live::LiveRecord;
use super::{push_recent, Network, PendingOp, Status};
use crate::clock::tid;
use crate::records::StrongRef;
use crate::truth::RecordLink;
use crate::wire::{self, Account, Cid, Commit, Event, Identity, OpAction, RepoOp, Sync, Value};

impl Network {
    pub(super) fn handle_change(&mut self, idx: usize) -> Event {
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

    pub(super) fn account_change(&mut self, idx: usize, status: Status) -> Event {
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

    /// A `#sync` announcing the repo's current commit (truth is unchanged).
    pub(super) fn sync_event(&mut self, idx: usize) -> Event {
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

    pub(super) fn signature(&mut self) -> Vec<u8> {
        (0..8)
            .flat_map(|_| self.rng.next_u64().to_be_bytes())
            .collect()
    }

    /// Applies ops to the repo and the truth, and wraps them in a `#commit` event.
    pub(super) fn commit(&mut self, idx: usize, ops: Vec<PendingOp>) -> Event {
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
