//! The ground truth: the index's expected state after a prefix of the event
//! stream. Counts are derived purely from the live record set, so the same
//! rules can be recomputed from PostgreSQL and compared field by field.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Every live record: at-uri -> CID of its latest version.
    pub records: BTreeMap<String, String>,
    pub actors: BTreeMap<String, ActorTruth>,
    /// Every live post: at-uri -> its interaction counts.
    pub posts: BTreeMap<String, PostCounts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorTruth {
    pub handle: Option<String>,
    pub status: String,
    pub followers: u64,
    pub follows: u64,
    pub posts: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostCounts {
    pub likes: u64,
    pub reposts: u64,
    pub replies: u64,
    pub quotes: u64,
}

/// What a live record points at, as far as the counts are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordLink {
    None,
    Follow {
        subject: String,
    },
    Like {
        subject: String,
    },
    Repost {
        subject: String,
    },
    Post {
        parent: Option<String>,
        quote: Option<String>,
    },
}

/// Builds a truth from actors (did, handle, status) and live records (uri, author did, cid, link).
pub(crate) fn build<'a>(
    actors: impl Iterator<Item = (&'a str, Option<&'a str>, &'a str)>,
    records: impl Iterator<Item = (String, &'a str, String, &'a RecordLink)>,
) -> GroundTruth {
    let mut truth = GroundTruth::default();
    for (did, handle, status) in actors {
        truth.actors.insert(
            did.to_owned(),
            ActorTruth {
                handle: handle.map(str::to_owned),
                status: status.to_owned(),
                ..Default::default()
            },
        );
    }
    let mut followers: HashMap<&str, u64> = HashMap::new();
    let mut links: Vec<&RecordLink> = Vec::new();
    for (uri, author, cid, link) in records {
        match link {
            RecordLink::Follow { subject } => {
                *followers.entry(subject.as_str()).or_default() += 1;
                if let Some(a) = truth.actors.get_mut(author) {
                    a.follows += 1;
                }
            }
            RecordLink::Post { .. } => {
                if let Some(a) = truth.actors.get_mut(author) {
                    a.posts += 1;
                }
                truth.posts.insert(uri.clone(), PostCounts::default());
            }
            _ => {}
        }
        links.push(link);
        truth.records.insert(uri, cid);
    }
    for (did, n) in followers {
        if let Some(a) = truth.actors.get_mut(did) {
            a.followers = n;
        }
    }
    for link in links {
        let bump = |posts: &mut BTreeMap<String, PostCounts>, uri: &str, f: fn(&mut PostCounts)| {
            if let Some(c) = posts.get_mut(uri) {
                f(c);
            }
        };
        match link {
            RecordLink::Like { subject } => bump(&mut truth.posts, subject, |c| c.likes += 1),
            RecordLink::Repost { subject } => bump(&mut truth.posts, subject, |c| c.reposts += 1),
            RecordLink::Post { parent, quote } => {
                if let Some(p) = parent {
                    bump(&mut truth.posts, p, |c| c.replies += 1);
                }
                if let Some(q) = quote {
                    bump(&mut truth.posts, q, |c| c.quotes += 1);
                }
            }
            RecordLink::None | RecordLink::Follow { .. } => {}
        }
    }
    truth
}

impl GroundTruth {
    /// The documented JSON shape (keys sorted), as the index crate also produces it.
    pub fn to_json(&self) -> String {
        // Serializing maps of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
