//! The network before the firehose window opens: the initial accounts with
//! profiles and records that no event will ever show.

use super::{Network, PendingOp};
use crate::clock::rfc3339;
use crate::records;
use crate::truth::RecordLink;

impl Network {
    /// With `history_commits_per_account > 0`, every initial account is
    /// introduced and makes that many commits, at synthetic times before the
    /// first event (seqs up to 0, which no frame carries). Repos and the truth
    /// change; no event is produced, and each repo's head is signed once at
    /// the end.
    pub(super) fn make_history(&mut self) {
        let per = self.cfg.history_commits_per_account;
        if per == 0 {
            return;
        }
        let n = self.actors.len();
        self.quiet = true;
        self.seq = -((n * (per + 1)) as i64);
        for idx in 0..n {
            self.tick();
            let (name, time) = match self.actors.get_mut(idx) {
                Some(actor) => {
                    actor.intro = 3;
                    (actor.display_name.clone(), self.now.clone())
                }
                None => continue,
            };
            let record = records::profile(&name, "Posting since before the window.", &time);
            let op = PendingOp::create(
                "app.bsky.actor.profile",
                "self".into(),
                record,
                RecordLink::None,
            );
            self.commit(idx, vec![op]);
        }
        for _ in 0..per {
            for idx in 0..n {
                self.tick();
                let ops = match self.rng.below(10) {
                    0..=3 => self.like_ops(idx),
                    4..=6 => self.post_ops(idx),
                    7 => self.repost_op(idx),
                    _ => self.follow_op(idx),
                };
                let ops = if ops.is_empty() {
                    self.post_ops(idx)
                } else {
                    ops
                };
                self.commit(idx, ops);
            }
        }
        self.quiet = false;
        for actor in &mut self.actors {
            if let Some(rev) = actor.rev.take() {
                actor.sign_head(&self.cfg, rev);
            }
        }
        self.seq = 0;
    }

    pub(super) fn tick(&mut self) {
        self.seq += 1;
        self.now = rfc3339(self.now_micros());
    }
}
