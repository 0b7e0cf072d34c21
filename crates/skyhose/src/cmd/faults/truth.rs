//! The end of every scenario: the database against the simulator's ground
//! truth, record by record and count by count, summarised so a failure says
//! what differs and gives one example.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context;
use skyhose_index::{ActorSnapshot, PostSnapshot, Snapshot};
use skyhose_sim::{ActorTruth, GroundTruth, Network, PostCounts, SimConfig};

/// The ground truth after the first `events` events of the network.
pub async fn after(sim: &SimConfig, events: u64) -> anyhow::Result<GroundTruth> {
    let sim = sim.clone();
    tokio::task::spawn_blocking(move || {
        let mut net = Network::new(sim);
        for _ in 0..events {
            net.next_event();
        }
        net.truth()
    })
    .await
    .context("computing the ground truth")
}

/// How a snapshot differs from the truth; all zero means equal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub records_missing: usize,
    pub records_extra: usize,
    pub records_wrong_cid: usize,
    pub actors_differing: usize,
    pub posts_differing: usize,
    /// The first difference found, in words.
    pub example: Option<String>,
    /// Records in the truth, for scale.
    pub truth_records: usize,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.records_missing == 0
            && self.records_extra == 0
            && self.records_wrong_cid == 0
            && self.actors_differing == 0
            && self.posts_differing == 0
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "equal ({} live records)", self.truth_records);
        }
        write!(
            f,
            "{} records missing, {} extra, {} with another CID, {} actors and {} posts with other values",
            self.records_missing,
            self.records_extra,
            self.records_wrong_cid,
            self.actors_differing,
            self.posts_differing
        )?;
        if let Some(example) = &self.example {
            write!(f, "; e.g. {example}")?;
        }
        Ok(())
    }
}

pub fn compare(snapshot: &Snapshot, truth: &GroundTruth) -> Diff {
    let mut diff = Diff {
        truth_records: truth.records.len(),
        ..Diff::default()
    };
    for (uri, cid) in &truth.records {
        match snapshot.records.get(uri) {
            None => {
                diff.records_missing += 1;
                diff.example
                    .get_or_insert_with(|| format!("record {uri} is missing"));
            }
            Some(got) if got != cid => {
                diff.records_wrong_cid += 1;
                diff.example
                    .get_or_insert_with(|| format!("record {uri} has CID {got}, truth {cid}"));
            }
            Some(_) => {}
        }
    }
    for uri in snapshot.records.keys() {
        if !truth.records.contains_key(uri) {
            diff.records_extra += 1;
            diff.example.get_or_insert_with(|| {
                format!("record {uri} is live but deleted or never created")
            });
        }
    }
    diff.actors_differing = differing(
        &snapshot.actors,
        &truth.actors,
        actor_eq,
        &mut diff.example,
        "actor",
    );
    diff.posts_differing = differing(
        &snapshot.posts,
        &truth.posts,
        post_eq,
        &mut diff.example,
        "post",
    );
    diff
}

/// Keys whose values differ or that only one side has.
fn differing<A: fmt::Debug, B: fmt::Debug>(
    got: &BTreeMap<String, A>,
    want: &BTreeMap<String, B>,
    eq: fn(&A, &B) -> bool,
    example: &mut Option<String>,
    what: &str,
) -> usize {
    let mut n = 0;
    for (key, w) in want {
        match got.get(key) {
            Some(g) if eq(g, w) => {}
            g => {
                n += 1;
                example.get_or_insert_with(|| format!("{what} {key}: index {g:?}, truth {w:?}"));
            }
        }
    }
    for (key, g) in got {
        if !want.contains_key(key) {
            n += 1;
            example.get_or_insert_with(|| format!("{what} {key}: index {g:?}, not in the truth"));
        }
    }
    n
}

fn count_eq(got: i64, want: u64) -> bool {
    u64::try_from(got).is_ok_and(|g| g == want)
}

fn actor_eq(g: &ActorSnapshot, w: &ActorTruth) -> bool {
    g.handle == w.handle
        && g.status == w.status
        && count_eq(g.followers, w.followers)
        && count_eq(g.follows, w.follows)
        && count_eq(g.posts, w.posts)
}

fn post_eq(g: &PostSnapshot, w: &PostCounts) -> bool {
    count_eq(g.likes, w.likes)
        && count_eq(g.reposts, w.reposts)
        && count_eq(g.replies, w.replies)
        && count_eq(g.quotes, w.quotes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_counted_and_one_is_named() {
        let mut truth = GroundTruth::default();
        truth.records.insert("at://a/x/1".into(), "c1".into());
        truth.records.insert("at://a/x/2".into(), "c2".into());
        truth.posts.insert(
            "at://a/x/1".into(),
            PostCounts {
                likes: 2,
                ..PostCounts::default()
            },
        );
        let mut snapshot = Snapshot {
            records: BTreeMap::new(),
            actors: BTreeMap::new(),
            posts: BTreeMap::new(),
        };
        snapshot.records.insert("at://a/x/1".into(), "c1".into());
        snapshot.records.insert("at://a/x/3".into(), "c3".into());
        snapshot.posts.insert(
            "at://a/x/1".into(),
            PostSnapshot {
                likes: 3,
                reposts: 0,
                replies: 0,
                quotes: 0,
            },
        );
        let diff = compare(&snapshot, &truth);
        assert_eq!(
            (
                diff.records_missing,
                diff.records_extra,
                diff.posts_differing
            ),
            (1, 1, 1)
        );
        assert!(diff.to_string().contains("at://a/x/2 is missing"), "{diff}");
        snapshot.records.remove("at://a/x/3");
        snapshot.records.insert("at://a/x/2".into(), "c2".into());
        snapshot.posts.insert(
            "at://a/x/1".into(),
            PostSnapshot {
                likes: 2,
                reposts: 0,
                replies: 0,
                quotes: 0,
            },
        );
        assert!(compare(&snapshot, &truth).is_empty());
    }
}
