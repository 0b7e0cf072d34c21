//! What accounts write: the record-creating actions of the event mix, with
//! subjects chosen among existing posts, accounts and lists.

use super::{static_collection, Network, PendingOp, Status, LANGS, WORDS};
use crate::records::{self, Feature, PostParts, StrongRef};
use crate::truth::RecordLink;
use crate::wire::Value;

impl Network {
    /// A post to interact with: usually by a popular author, else a recent one.
    pub(super) fn pick_post(&mut self) -> Option<StrongRef> {
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

    pub(super) fn like_ops(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn maybe_via(&mut self) -> Option<StrongRef> {
        if self.recent_reposts.is_empty() || !self.rng.chance(0.1) {
            return None;
        }
        self.recent_reposts
            .get(self.rng.below(self.recent_reposts.len()))
            .cloned()
    }

    pub(super) fn repost_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn post_ops(&mut self, idx: usize) -> Vec<PendingOp> {
        let created_at = self.created_at();
        let (text, facets) = self.post_text();
        let langs = vec![LANGS[self.rng.skewed(LANGS.len())]];
        let mut reply = None;
        let mut parent_uri = None;
        if self.rng.chance(0.3) {
            if let Some(parent) = self.pick_post() {
                let root = self.root_of(&parent).unwrap_or_else(|| parent.clone());
                // Under a gated root this would be a top-level post instead.
                if !self.gated_roots.contains(&root.uri) {
                    parent_uri = Some(parent.uri.clone());
                    reply = Some((root, parent));
                }
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

    pub(super) fn root_of(&self, post: &StrongRef) -> Option<StrongRef> {
        let rest = post.uri.strip_prefix("at://")?;
        let (did, path) = rest.split_once('/')?;
        let actor = self.actors.get(*self.by_did.get(did)?)?;
        actor.live.get(path)?.root.clone()
    }

    pub(super) fn images(&mut self) -> Value {
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
    pub(super) fn post_text(&mut self) -> (String, Vec<Value>) {
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

    pub(super) fn follow_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn random_other(&mut self, idx: usize) -> Option<usize> {
        let target = self.rng.below(self.actors.len());
        let t = self.actors.get(target)?;
        (target != idx && t.intro >= 1 && t.status != Status::Deleted).then_some(target)
    }

    pub(super) fn block_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn delete_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn profile_update_op(&mut self, idx: usize) -> Vec<PendingOp> {
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
    pub(super) fn list_curator(&mut self, fallback: usize) -> usize {
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

    pub(super) fn list_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn own_list_uri(&mut self, idx: usize) -> Option<String> {
        let actor = self.actors.get(idx)?;
        let path = actor.lists.get(self.rng.below(actor.lists.len().max(1)))?;
        Some(actor.uri(path))
    }

    pub(super) fn list_item_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn list_block_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn generator_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    pub(super) fn starter_pack_op(&mut self, idx: usize) -> Vec<PendingOp> {
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

    /// Threadgates and postgates share the rkey of the post they gate. A
    /// threadgate only goes on a thread root no reply has referenced yet.
    pub(super) fn gate_op(&mut self, idx: usize, collection: &'static str) -> Vec<PendingOp> {
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
        if collection == "app.bsky.feed.threadgate" {
            let is_root = actor
                .live
                .get(post_path)
                .and_then(|r| r.root.as_ref())
                .is_some_and(|root| root.uri == uri);
            if !is_root || self.replied_roots.contains(&uri) {
                return Vec::new();
            }
        }
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

    pub(super) fn self_record_op(&mut self, collection: &'static str) -> Vec<PendingOp> {
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

    pub(super) fn verification_op(&mut self, idx: usize) -> Vec<PendingOp> {
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
}
