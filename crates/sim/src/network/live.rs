//! The live records of one repository, with O(1) random choice and removal.

use crate::fasthash::FastMap;
use crate::records::StrongRef;
use crate::truth::RecordLink;
use crate::wire::Cid;

pub(super) struct LiveRecord {
    pub(super) cid: Cid,
    pub(super) link: RecordLink,
    /// For posts: the thread root, which replies to this post must reference.
    pub(super) root: Option<StrongRef>,
    /// The record's DAG-CBOR block, for the repo its host serves.
    pub(super) block: Box<[u8]>,
}

#[derive(Default)]
pub(super) struct LiveSet {
    pub(super) paths: Vec<String>,
    pub(super) index: FastMap<String, usize>,
    pub(super) records: Vec<LiveRecord>,
}

impl LiveSet {
    pub(super) fn get(&self, path: &str) -> Option<&LiveRecord> {
        self.index.get(path).and_then(|&i| self.records.get(i))
    }

    pub(super) fn put(&mut self, path: String, record: LiveRecord) {
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

    pub(super) fn remove(&mut self, path: &str) -> Option<LiveRecord> {
        let i = self.index.remove(path)?;
        self.paths.swap_remove(i);
        let record = self.records.swap_remove(i);
        if let Some(moved) = self.paths.get(i) {
            self.index.insert(moved.clone(), i);
        }
        Some(record)
    }

    pub(super) fn clear(&mut self) {
        self.paths.clear();
        self.index.clear();
        self.records.clear();
    }
}
