//! The records that this process's batches have in flight.
//!
//! Two concurrent transactions that touch the same record meet on its row:
//! the second waits, at the start of its transaction, until the first
//! commits, and with two workers that makes one of them idle for a third of
//! the time on a stream where records are deleted soon after they are
//! created. So before a worker opens a transaction it admits only the events
//! whose records no other worker of the process has in flight; it keeps the
//! others for its next batch. Order does not matter to the result (writes
//! are ordered by rev and seq), so a later batch may apply them. Workers in
//! other processes still meet on the row locks, which is correct, only
//! slower.
//!
//! Records are kept as 64-bit hashes of their URIs: a collision only holds
//! an event back one batch.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use crate::entry::Event;

/// After this many batches an event is admitted whatever else is in flight,
/// so it cannot be held back for ever by a record that stays busy.
pub const MAX_HOLDS: u32 = 2;

#[derive(Default)]
pub struct InFlight {
    /// Record hash -> the worker whose batch holds it.
    held: Mutex<HashMap<u64, usize>>,
}

/// The records of one admitted batch; released when dropped, after the
/// batch committed or failed.
pub struct Admitted<'a> {
    registry: &'a InFlight,
    records: Vec<u64>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut held = self
            .registry
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for record in &self.records {
            held.remove(record);
        }
    }
}

impl InFlight {
    /// Admits for `worker` the events of `events` (event, times held back
    /// so far) whose records no other worker holds; returns the admission
    /// and, per event, whether it was admitted.
    pub fn admit<'a>(
        &'a self,
        worker: usize,
        events: &[(&Event, u32)],
    ) -> (Admitted<'a>, Vec<bool>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut mine = HashSet::new();
        let admitted = events
            .iter()
            .map(|(event, holds)| {
                let records: Vec<u64> = records_of(event).collect();
                let busy = records
                    .iter()
                    .any(|record| held.get(record).is_some_and(|owner| *owner != worker));
                if busy && *holds < MAX_HOLDS {
                    return false;
                }
                for record in records {
                    if let Entry::Vacant(slot) = held.entry(record) {
                        slot.insert(worker);
                        mine.insert(record);
                    }
                }
                true
            })
            .collect();
        let admission = Admitted {
            registry: self,
            records: mine.into_iter().collect(),
        };
        (admission, admitted)
    }
}

/// The records an event writes. Account events have none here: a deletion
/// sweeps records it cannot name in advance and is rare, so it is never
/// held back and waits on row locks like a batch of another process.
fn records_of(event: &Event) -> impl Iterator<Item = u64> + '_ {
    let ops = match event {
        Event::Commit(commit) => commit.ops.as_slice(),
        _ => &[],
    };
    ops.iter().map(|op| {
        let mut hasher = DefaultHasher::new();
        op.uri.hash(&mut hasher);
        hasher.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Commit, Op};

    fn commit(uris: &[&str]) -> Event {
        Event::Commit(Commit {
            repo: "did:plc:a".into(),
            rev: None,
            seq: 1,
            ops: uris
                .iter()
                .map(|uri| Op {
                    uri: (*uri).into(),
                    collection: "app.bsky.feed.like".into(),
                    rkey: "3k".into(),
                    write: None,
                })
                .collect(),
        })
    }

    #[test]
    fn events_on_records_in_flight_elsewhere_wait_for_a_later_batch() {
        let registry = InFlight::default();
        let (a, b, c) = (
            commit(&["at://x/1"]),
            commit(&["at://x/2"]),
            commit(&["at://x/1", "at://x/3"]),
        );
        let (first, admitted) = registry.admit(0, &[(&a, 0), (&b, 0)]);
        assert_eq!(admitted, [true, true]);
        // The same worker's own records never hold it back.
        let (second, admitted) = registry.admit(1, &[(&c, 0), (&b, 0)]);
        assert_eq!(admitted, [false, false]);
        drop(second);
        let (forced, admitted) = registry.admit(1, &[(&c, MAX_HOLDS)]);
        assert_eq!(admitted, [true]);
        drop(forced);
        drop(first);
        let (_, admitted) = registry.admit(1, &[(&c, 0), (&b, 0)]);
        assert_eq!(admitted, [true, true]);
    }

    #[test]
    fn a_forced_event_does_not_release_the_owners_records() {
        let registry = InFlight::default();
        let a = commit(&["at://x/1"]);
        let (_first, _) = registry.admit(0, &[(&a, 0)]);
        let (forced, admitted) = registry.admit(1, &[(&a, MAX_HOLDS)]);
        assert_eq!(admitted, [true]);
        drop(forced);
        let (_, admitted) = registry.admit(1, &[(&a, 0)]);
        assert_eq!(admitted, [false], "worker 0 still holds the record");
    }
}
