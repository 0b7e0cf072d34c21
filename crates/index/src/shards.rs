//! Every repo's events applied by one worker of the process.
//!
//! The end of a batch transaction writes the actor row of each repo it has
//! a commit of (progress, counters) and the counter rows of the posts it
//! touches, and holds them until it commits; a concurrent batch that needs
//! one of those rows waits. Busy repos have commits in nearly every batch,
//! so with repos mixed across workers the ends of their transactions ran one
//! after the other. A worker therefore keeps the events of its share of the
//! repos (by a hash of the DID) and hands the others to the worker that owns
//! them, which applies and acknowledges them with its next batch; an entry
//! can be acknowledged by any consumer of the group. Only the counters of
//! another repo's posts and followers are still shared.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::entry::{Event, RawEntry};

pub struct Shards {
    inboxes: Vec<Mutex<Inbox>>,
}

/// Events other workers read for one worker.
struct Inbox {
    events: Vec<(RawEntry, Event)>,
    /// False once its worker has stopped reading (a drained stream): what
    /// would land here is applied by the worker that read it instead.
    open: bool,
}

impl Shards {
    pub fn new(workers: usize) -> Self {
        Shards {
            inboxes: (0..workers)
                .map(|_| {
                    Mutex::new(Inbox {
                        events: Vec::new(),
                        open: true,
                    })
                })
                .collect(),
        }
    }

    /// The worker that applies `event`; `None` for events without a repo.
    pub fn owner(&self, event: &Event) -> Option<usize> {
        let did = match event {
            Event::Commit(commit) => &commit.repo,
            Event::Identity { did, .. } | Event::Account { did, .. } | Event::Sync { did, .. } => {
                did
            }
            Event::Ignored { .. } => return None,
        };
        let mut hasher = DefaultHasher::new();
        did.hash(&mut hasher);
        Some((hasher.finish() % self.inboxes.len().max(1) as u64) as usize)
    }

    /// Leaves `events` for `worker`; returns them if its worker has
    /// stopped, for the caller to apply.
    pub fn hand_over(
        &self,
        worker: usize,
        events: Vec<(RawEntry, Event)>,
    ) -> Vec<(RawEntry, Event)> {
        if events.is_empty() {
            return events;
        }
        match self.inboxes.get(worker).map(lock) {
            Some(mut inbox) if inbox.open => {
                inbox.events.extend(events);
                Vec::new()
            }
            _ => events,
        }
    }

    /// The events handed to `worker` so far.
    pub fn take(&self, worker: usize) -> Vec<(RawEntry, Event)> {
        self.inboxes
            .get(worker)
            .map_or_else(Vec::new, |inbox| std::mem::take(&mut lock(inbox).events))
    }

    pub fn has_waiting(&self, worker: usize) -> bool {
        self.inboxes
            .get(worker)
            .is_some_and(|inbox| !lock(inbox).events.is_empty())
    }

    /// The most events waiting for any worker but `worker`.
    pub fn most_waiting_for_others(&self, worker: usize) -> usize {
        self.inboxes
            .iter()
            .enumerate()
            .filter(|(owner, _)| *owner != worker)
            .map(|(_, inbox)| lock(inbox).events.len())
            .max()
            .unwrap_or(0)
    }

    /// Closes `worker`'s inbox so that it may stop; false (and the inbox
    /// stays open) when events are waiting in it.
    pub fn close(&self, worker: usize) -> bool {
        self.inboxes.get(worker).is_none_or(|inbox| {
            let mut inbox = lock(inbox);
            inbox.open = !inbox.events.is_empty();
            !inbox.open
        })
    }
}

fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    inbox.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(did: &str) -> Event {
        Event::Identity {
            did: did.into(),
            handle: None,
            seq: 1,
        }
    }

    #[test]
    fn a_repo_always_has_the_same_owner_and_handed_events_wait_for_it() {
        let shards = Shards::new(2);
        let owners: Vec<Option<usize>> = (0..50)
            .map(|i| shards.owner(&identity(&format!("did:plc:{i}"))))
            .collect();
        assert!(owners.contains(&Some(0)) && owners.contains(&Some(1)));
        assert_eq!(
            shards.owner(&identity("did:plc:7")),
            shards.owner(&identity("did:plc:7"))
        );
        assert_eq!(shards.owner(&Event::Ignored { seq: None }), None);
        let entry = RawEntry {
            id: "1-0".into(),
            fields: Vec::new(),
        };
        let handed = vec![(entry, identity("did:plc:7"))];
        assert!(shards.hand_over(1, handed.clone()).is_empty());
        assert!(shards.has_waiting(1) && !shards.has_waiting(0));
        assert_eq!(shards.most_waiting_for_others(0), 1);
        assert_eq!(shards.most_waiting_for_others(1), 0);
        assert!(!shards.close(1), "a worker with waiting events goes on");
        assert_eq!(shards.take(1).len(), 1);
        assert!(!shards.has_waiting(1));
        assert!(shards.close(1));
        assert_eq!(
            shards.hand_over(1, handed).len(),
            1,
            "a stopped worker's events come back to the reader"
        );
        assert_eq!(Shards::new(1).owner(&identity("did:plc:7")), Some(0));
    }
}
