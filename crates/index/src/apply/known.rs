//! Actors whose rows are known to be visible, so that a batch with nothing
//! else to change on such a row leaves it alone instead of probing it.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use super::keys::{Dictionary, DEFAULT_DICTIONARY};

/// A bounded set of DIDs whose actor rows are committed with `indexed` set.
/// `indexed` never goes back to false, so the set is only ever behind the
/// database: an actor missing from it costs its row a probe, never a wrong
/// result. When full it starts over, which is cheaper to keep than an
/// order of use, and refills within a few batches.
///
/// With repo sync on, an actor is known only once its batch also queued
/// its repo, so an unknown author is one the backfill queue may not have
/// (`apply::sync`).
pub struct KnownActors {
    dids: Mutex<HashSet<Box<str>>>,
    capacity: usize,
    repo_sync: bool,
    /// The compact rows' ids this process has seen.
    pub(super) dictionary: Dictionary,
}

/// About 8 MB of DIDs: most of the repos active in an hour of the network.
pub const DEFAULT_KNOWN_ACTORS: usize = 100_000;

impl KnownActors {
    pub fn new(capacity: usize) -> Self {
        KnownActors {
            dids: Mutex::new(HashSet::new()),
            capacity,
            repo_sync: false,
            dictionary: Dictionary::new(DEFAULT_DICTIONARY),
        }
    }

    /// Batches also keep repo roots and queue repos for the backfill
    /// (`apply::sync`): on when a backfill runs beside the index.
    pub fn with_repo_sync(mut self, on: bool) -> Self {
        self.repo_sync = on;
        self
    }

    pub(super) fn repo_sync(&self) -> bool {
        self.repo_sync
    }

    /// Those of `dids` not known to be visible.
    pub(super) fn unknown<'a>(&self, dids: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
        let known = self
            .dids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        dids.filter(|did| !known.contains(*did)).collect()
    }

    /// Records `dids` as visible; called only after their rows committed.
    pub(super) fn insert_all<'a>(&self, dids: impl IntoIterator<Item = &'a str>) {
        let mut known = self
            .dids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for did in dids {
            if known.contains(did) {
                continue;
            }
            if known.len() >= self.capacity {
                known.clear();
            }
            known.insert(did.into());
        }
    }
}

impl std::fmt::Debug for KnownActors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownActors")
            .field("capacity", &self.capacity)
            .field("repo_sync", &self.repo_sync)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_committed_actors_are_known_and_the_set_stays_bounded() {
        let known = KnownActors::new(2);
        let all = ["did:plc:a", "did:plc:b", "did:plc:c"];
        assert_eq!(known.unknown(all.into_iter()).len(), 3);
        known.insert_all(vec!["did:plc:a", "did:plc:b"]);
        assert_eq!(
            known.unknown(all.into_iter()),
            BTreeSet::from(["did:plc:c"])
        );
        // Full: it starts over rather than grow.
        known.insert_all(vec!["did:plc:c"]);
        assert_eq!(
            known.unknown(all.into_iter()),
            BTreeSet::from(["did:plc:a", "did:plc:b"])
        );
    }
}
