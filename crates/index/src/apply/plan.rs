//! What a batch changes, decided in Rust from the batch and the locked rows:
//! the newest op per record, each record's transition (last writer by rev
//! wins, tombstones stay, a deleted account's records die), and the rows,
//! count deltas and notifications that follow from it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::entry::{Commit, Event, Write, ACCOUNT_DELETED};
use crate::kinds::{kind_table, KindTable};
use crate::records::{
    CHAT_DECLARATION, FEED_GENERATOR, FOLLOW, LABELER, LIKE, LIST, POST, PROFILE, REPOST,
    SELF_RKEY, STARTER_PACK,
};

/// How a write is ordered against the stored state: by repo rev when both
/// sides have one (TIDs sort as strings), else by seq. `op_index` orders
/// two ops on one record inside the same commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OrderKey<'a> {
    pub rev: Option<&'a str>,
    pub seq: i64,
    pub op_index: usize,
}

fn is_newer(candidate: &OrderKey<'_>, stored_rev: Option<&str>, stored_seq: i64) -> bool {
    match (candidate.rev, stored_rev) {
        (Some(new), Some(old)) if new != old => new > old,
        _ => candidate.seq > stored_seq,
    }
}

fn key_cmp(a: &OrderKey<'_>, b: &OrderKey<'_>) -> std::cmp::Ordering {
    let by_rev = match (a.rev, b.rev) {
        (Some(x), Some(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    };
    by_rev
        .then(a.seq.cmp(&b.seq))
        .then(a.op_index.cmp(&b.op_index))
}

/// The winning op of this batch for one record.
pub(super) struct Candidate<'a> {
    pub key: OrderKey<'a>,
    pub did: &'a str,
    pub collection: &'a str,
    pub rkey: &'a str,
    pub write: Option<&'a Write>,
}

#[derive(Default)]
pub(super) struct ActorUpdate<'a> {
    pub handle: Option<(i64, Option<&'a str>)>,
    pub status: Option<(i64, &'a str)>,
    pub deleted_seq: Option<i64>,
    /// The newest commit's seq and rev.
    pub progress: Option<(i64, Option<&'a str>)>,
    /// Some commit changed no row that keeps its own rev and seq (it had
    /// no ops, or ops on records kept in `records`), so the actor row must
    /// carry the progress: `repo_progress` reads it from there.
    pub progress_on_row: bool,
}

impl ActorUpdate<'_> {
    /// Whether the actor's row has to be written for this update.
    pub fn changes_row(&self) -> bool {
        self.handle.is_some()
            || self.status.is_some()
            || self.deleted_seq.is_some()
            || self.progress_on_row
    }
}

/// A batch's events grouped: what changes per actor, and its commits.
pub(super) struct Batch<'a> {
    pub actors: BTreeMap<&'a str, ActorUpdate<'a>>,
    pub commits: Vec<&'a Commit>,
}

impl<'a> Batch<'a> {
    pub fn collect(events: &[&'a Event]) -> Self {
        let mut actors: BTreeMap<&'a str, ActorUpdate<'a>> = BTreeMap::new();
        let mut commits: Vec<&Commit> = Vec::new();
        for event in events {
            match event {
                Event::Commit(commit) => {
                    commits.push(commit);
                    let update = actors.entry(commit.repo.as_str()).or_default();
                    if update.progress.is_none_or(|(seq, _)| seq < commit.seq) {
                        update.progress = Some((commit.seq, commit.rev.as_deref()));
                    }
                    update.progress_on_row |= commit.ops.is_empty()
                        || commit.ops.iter().any(|op| {
                            kind_table(&op.collection).is_none_or(|kind| kind.own_state.is_none())
                        });
                }
                Event::Identity { did, handle, seq } => {
                    let update = actors.entry(did.as_str()).or_default();
                    // A handle is a hint; an event without one keeps the
                    // hint an earlier event of the batch gave.
                    let (last, hint) = update.handle.unwrap_or((i64::MIN, None));
                    let hint = match handle.as_deref() {
                        Some(h) if *seq > last || hint.is_none() => Some(h),
                        _ => hint,
                    };
                    update.handle = Some((last.max(*seq), hint));
                }
                Event::Account { did, status, seq } => {
                    let update = actors.entry(did.as_str()).or_default();
                    if update.status.is_none_or(|(old, _)| old < *seq) {
                        update.status = Some((*seq, status.as_str()));
                    }
                    if status == ACCOUNT_DELETED {
                        update.deleted_seq =
                            Some(update.deleted_seq.map_or(*seq, |old| old.max(*seq)));
                    }
                }
                // An event of the account, changing nothing on its row.
                Event::Sync { did, .. } => {
                    actors.entry(did.as_str()).or_default();
                }
                Event::Ignored { .. } => {}
            }
        }
        Batch { actors, commits }
    }

    /// Accounts this batch deletes, with the deletion's seq.
    pub fn deleting(&self) -> Vec<(&'a str, i64)> {
        self.actors
            .iter()
            .filter_map(|(did, update)| update.deleted_seq.map(|seq| (*did, seq)))
            .collect()
    }

    /// This batch's newest op per uri, leaving out commits that an account
    /// deletion (`deleted`: did -> seq) already superseded.
    pub fn candidates(&self, deleted: &HashMap<&str, i64>) -> BTreeMap<&'a str, Candidate<'a>> {
        let mut candidates: BTreeMap<&'a str, Candidate<'a>> = BTreeMap::new();
        for commit in &self.commits {
            if deleted
                .get(commit.repo.as_str())
                .is_some_and(|deleted| commit.seq <= *deleted)
            {
                continue;
            }
            for (op_index, op) in commit.ops.iter().enumerate() {
                let candidate = Candidate {
                    key: OrderKey {
                        rev: commit.rev.as_deref(),
                        seq: commit.seq,
                        op_index,
                    },
                    did: &commit.repo,
                    collection: &op.collection,
                    rkey: &op.rkey,
                    write: op.write.as_ref(),
                };
                match candidates.get(op.uri.as_str()) {
                    Some(existing) if key_cmp(&existing.key, &candidate.key).is_ge() => {}
                    _ => {
                        candidates.insert(&op.uri, candidate);
                    }
                }
            }
        }
        candidates
    }
}

/// A `records` row as locked by the batch transaction.
pub(super) struct Stored {
    pub did: String,
    pub collection: String,
    pub live: bool,
    pub rev: Option<String>,
    pub seq: Option<i64>,
    pub subject: Option<String>,
    pub quote_subject: Option<String>,
    /// A reply its thread's gate disallowed when it was written: not
    /// counted in its parent's replies.
    pub violates_threadgate: bool,
}

impl Stored {
    pub fn absent(did: &str, collection: &str) -> Self {
        Stored {
            did: did.to_owned(),
            collection: collection.to_owned(),
            live: false,
            rev: None,
            seq: None,
            subject: None,
            quote_subject: None,
            violates_threadgate: false,
        }
    }
}

/// Identity of a touched record: `(did, collection, rkey)` by uri.
pub(super) type Touched<'a> = BTreeMap<&'a str, (&'a str, &'a str, &'a str)>;

/// One existing row's new state, in `records` or an own-state table.
pub(super) struct RecordUpdate<'a> {
    pub uri: &'a str,
    /// The new content when the record is live.
    pub write: Option<&'a Write>,
    pub cid: Option<&'a str>,
    pub rev: Option<&'a str>,
    pub seq: Option<i64>,
    pub live: bool,
    pub subject: Option<&'a str>,
    pub quote_subject: Option<&'a str>,
    pub record: Option<&'a str>,
}

#[derive(Default)]
pub(super) struct PostDelta(pub [i64; 4]);
#[derive(Default)]
pub(super) struct ActorDelta(pub [i64; 7]);

pub(super) const LIKES: usize = 0;
pub(super) const REPOSTS: usize = 1;
pub(super) const REPLIES: usize = 2;
pub(super) const QUOTES: usize = 3;
pub(super) const FOLLOWERS: usize = 0;
pub(super) const FOLLOWS: usize = 1;
pub(super) const POSTS: usize = 2;
/// What profile views show under `associated`: counted here so a view reads
/// one row instead of counting four tables per actor.
pub(super) const LISTS: usize = 3;
pub(super) const FEEDGENS: usize = 4;
pub(super) const STARTER_PACKS: usize = 5;
pub(super) const LABELERS: usize = 6;

/// New rows of one projection table, one vector per column.
pub(super) struct KindRows<'a> {
    pub kind: &'static KindTable,
    pub uris: Vec<&'a str>,
    pub dids: Vec<&'a str>,
    pub rkeys: Vec<&'a str>,
    pub cids: Vec<&'a str>,
    pub columns: Vec<Vec<Option<&'a str>>>,
}

impl<'a> KindRows<'a> {
    fn new(kind: &'static KindTable) -> Self {
        KindRows {
            kind,
            uris: Vec::new(),
            dids: Vec::new(),
            rkeys: Vec::new(),
            cids: Vec::new(),
            columns: vec![Vec::new(); kind.columns.len()],
        }
    }

    fn push(&mut self, uri: &'a str, did: &'a str, rkey: &'a str, write: &'a Write) {
        self.uris.push(uri);
        self.dids.push(did);
        self.rkeys.push(rkey);
        self.cids.push(&write.cid);
        for (index, column) in self.columns.iter_mut().enumerate() {
            column.push(write.columns.get(index).and_then(|value| value.as_deref()));
        }
    }
}

#[derive(Default)]
pub(super) struct NotificationRows<'a> {
    pub recipients: Vec<&'a str>,
    pub reasons: Vec<&'static str>,
    pub reason_subjects: Vec<Option<&'a str>>,
    pub record_uris: Vec<&'a str>,
    /// The seq of the event that wrote the record: notifications are
    /// ordered by it, like those derived from like, repost and follow rows.
    pub seqs: Vec<i64>,
    /// The batch's live posts: a reply notifies the authors of the
    /// indexed posts above it, and a post those above the replies already
    /// indexed below it (`apply::write`).
    pub posts: PostRows<'a>,
}

/// The value of the projection column `name` in a write of `collection`.
pub(super) fn column<'a>(collection: &str, write: &'a Write, name: &str) -> Option<&'a str> {
    let kind = kind_table(collection)?;
    let index = kind.columns.iter().position(|c| c.name == name)?;
    write.columns.get(index)?.as_deref()
}

/// Posts written live by the batch, with their reply parent and root (whose
/// threadgate's hidden replies end the walk of reply notifications) and whether
/// they were not live before (only then can replies already indexed below
/// them be waiting for their notifications).
#[derive(Default)]
pub(super) struct PostRows<'a> {
    pub authors: Vec<&'a str>,
    pub uris: Vec<&'a str>,
    pub seqs: Vec<i64>,
    pub parents: Vec<Option<&'a str>>,
    pub roots: Vec<Option<&'a str>>,
    pub new: Vec<bool>,
}

impl<'a> NotificationRows<'a> {
    fn push_post(
        &mut self,
        author: &'a str,
        uri: &'a str,
        seq: i64,
        parent: Option<&'a str>,
        root: Option<&'a str>,
        new: bool,
    ) {
        let posts = &mut self.posts;
        posts.authors.push(author);
        posts.uris.push(uri);
        posts.seqs.push(seq);
        posts.parents.push(parent);
        posts.roots.push(root);
        posts.new.push(new);
    }

    fn push(&mut self, uri: &'a str, write: &'a Write, seq: i64) {
        for draft in &write.facts.notifications {
            self.recipients.push(&draft.recipient);
            self.reasons.push(draft.reason);
            self.reason_subjects.push(draft.reason_subject.as_deref());
            self.record_uris.push(uri);
            self.seqs.push(seq);
        }
    }
}

/// The records an actor's row mirrors for profile views that the batch
/// changed: `Some(write)` when one became live or changed, `Some(None)` when
/// it died, `None` when the batch left it alone.
#[derive(Default)]
pub(super) struct MirroredRecords<'a> {
    pub profile: Option<Option<&'a Write>>,
    pub chat_declaration: Option<Option<&'a Write>>,
}

/// Everything the batch writes after locking its records.
#[derive(Default)]
pub(super) struct Changes<'a> {
    /// Updates of `records` rows that existed before the batch (new rows
    /// were inserted with their final state when they were locked).
    pub records: Vec<RecordUpdate<'a>>,
    /// The same for the rows of tables that keep their own state, by table.
    pub own_state_updates: BTreeMap<&'static str, (&'static KindTable, Vec<RecordUpdate<'a>>)>,
    /// Records whose live state or content changed.
    pub transitions: u64,
    /// Projection rows to delete (dead records, and live ones being
    /// replaced), by table.
    pub kind_deletes: BTreeMap<&'static str, (&'static KindTable, Vec<&'a str>)>,
    pub kind_inserts: BTreeMap<&'static str, KindRows<'a>>,
    pub post_deltas: BTreeMap<String, PostDelta>,
    pub actor_deltas: BTreeMap<String, ActorDelta>,
    /// Records whose notifications are removed (they died or changed).
    pub notifications_cleared: Vec<&'a str>,
    pub notifications: NotificationRows<'a>,
    /// By did.
    pub mirrored: BTreeMap<&'a str, MirroredRecords<'a>>,
    /// Posts given new live content (`uri, did, write`) whose thread's gate
    /// is judged once the batch's rows are written: the new replies, and
    /// every rewritten post, whose mark from an earlier write must go.
    pub judged: Vec<(&'a str, &'a str, &'a Write)>,
}

/// Decides every touched record's transition. `stored` holds the locked
/// rows that existed; `inserted` the uris this batch created, already with
/// their final state.
pub(super) fn transitions<'a>(
    touched: &Touched<'a>,
    candidates: &BTreeMap<&'a str, Candidate<'a>>,
    stored: &'a HashMap<String, Stored>,
    inserted: &HashSet<String>,
    deleted: &HashMap<&str, i64>,
) -> Changes<'a> {
    let mut changes = Changes::default();
    for (uri, (did, collection, rkey)) in touched {
        let fresh = inserted.contains(*uri);
        let existing: Option<&'a Stored> = if fresh {
            None
        } else {
            match stored.get(*uri) {
                Some(old) => Some(old),
                None => continue,
            }
        };
        let absent;
        let old = match existing {
            Some(old) => old,
            None => {
                absent = Stored::absent(did, collection);
                &absent
            }
        };
        let candidate = candidates.get(uri);
        let update = match candidate {
            Some(candidate)
                if old.seq.is_none()
                    || is_newer(
                        &candidate.key,
                        old.rev.as_deref(),
                        old.seq.unwrap_or(i64::MIN),
                    ) =>
            {
                let write = candidate.write;
                RecordUpdate {
                    uri,
                    write,
                    cid: write.map(|w| w.cid.as_str()),
                    rev: candidate.key.rev,
                    seq: Some(candidate.key.seq),
                    live: write.is_some(),
                    subject: write.and_then(|w| w.facts.subject.as_deref()),
                    quote_subject: write.and_then(|w| w.facts.quote_subject.as_deref()),
                    record: write.and_then(Write::stored_json),
                }
            }
            _ => {
                // No newer op: only an account deletion can change this record.
                let killed = old.live
                    && deleted
                        .get(old.did.as_str())
                        .is_some_and(|d| old.seq.is_some_and(|seq| seq <= *d));
                if !killed {
                    continue;
                }
                // The tombstone keeps the rev of the write it ends.
                RecordUpdate {
                    uri,
                    write: None,
                    cid: None,
                    rev: existing.and_then(|old| old.rev.as_deref()),
                    seq: old.seq,
                    live: false,
                    subject: None,
                    quote_subject: None,
                    record: None,
                }
            }
        };
        changes.transitions += 1;
        if old.live {
            // A reply its gate disallowed was never counted.
            count(
                &mut changes,
                &old.collection,
                &old.did,
                old.subject.as_deref().filter(|_| !old.violates_threadgate),
                old.quote_subject.as_deref(),
                -1,
            );
            // Follows store no notifications (migration 0013).
            if matches!(old.collection.as_str(), POST | LIKE | REPOST) {
                changes.notifications_cleared.push(uri);
            }
        }
        let write = candidate.and_then(|c| c.write).filter(|_| update.live);
        if let Some(write) = write {
            count(
                &mut changes,
                &old.collection,
                &old.did,
                update.subject,
                update.quote_subject,
                1,
            );
            if let Some(seq) = update.seq {
                changes.notifications.push(uri, write, seq);
                if *collection == POST {
                    changes.notifications.push_post(
                        did,
                        uri,
                        seq,
                        update.subject,
                        column(POST, write, "reply_root_uri"),
                        !old.live,
                    );
                }
            }
            if *collection == POST && (!fresh || update.subject.is_some()) {
                changes.judged.push((uri, did, write));
            }
        }
        if *rkey == SELF_RKEY && matches!(*collection, PROFILE | CHAT_DECLARATION) {
            let mirrored = changes.mirrored.entry(did).or_default();
            if *collection == PROFILE {
                mirrored.profile = Some(write);
            } else {
                mirrored.chat_declaration = Some(write);
            }
        }
        let kind = kind_table(&old.collection);
        if let Some(kind) = kind.filter(|kind| kind.own_state.is_none()) {
            if old.live {
                changes
                    .kind_deletes
                    .entry(kind.table)
                    .or_insert_with(|| (kind, Vec::new()))
                    .1
                    .push(uri);
            }
            if let Some(write) = write {
                changes
                    .kind_inserts
                    .entry(kind.table)
                    .or_insert_with(|| KindRows::new(kind))
                    .push(uri, did, rkey, write);
            }
        }
        // A freshly inserted row already holds this state.
        if !fresh {
            match kind.filter(|kind| kind.own_state.is_some()) {
                Some(kind) => changes
                    .own_state_updates
                    .entry(kind.table)
                    .or_insert_with(|| (kind, Vec::new()))
                    .1
                    .push(update),
                None => changes.records.push(update),
            }
        }
    }
    changes
}

/// Adds `sign` times the contribution of one live record to the aggregates.
fn count(
    changes: &mut Changes<'_>,
    collection: &str,
    did: &str,
    subject: Option<&str>,
    quote_subject: Option<&str>,
    sign: i64,
) {
    let posts = &mut changes.post_deltas;
    let actors = &mut changes.actor_deltas;
    let mut post =
        |uri: &str, field: usize| posts.entry(uri.to_owned()).or_default().0[field] += sign;
    let mut actor =
        |did: &str, field: usize| actors.entry(did.to_owned()).or_default().0[field] += sign;
    match collection {
        POST => {
            if let Some(parent) = subject {
                post(parent, REPLIES);
            }
            if let Some(quoted) = quote_subject {
                post(quoted, QUOTES);
            }
            actor(did, POSTS);
        }
        LIKE => {
            if let Some(subject) = subject {
                post(subject, LIKES);
            }
        }
        REPOST => {
            if let Some(subject) = subject {
                post(subject, REPOSTS);
            }
        }
        FOLLOW => {
            actor(did, FOLLOWS);
            if let Some(subject) = subject {
                actor(subject, FOLLOWERS);
            }
        }
        LIST => actor(did, LISTS),
        FEED_GENERATOR => actor(did, FEEDGENS),
        STARTER_PACK => actor(did, STARTER_PACKS),
        LABELER => actor(did, LABELERS),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &str, seq: i64) -> Event {
        Event::Commit(Commit {
            repo: repo.into(),
            rev: None,
            seq,
            ops: Vec::new(),
            prev_data: None,
            data: None,
            resync: None,
        })
    }

    fn delete_of(repo: &str, collection: &str, seq: i64) -> Event {
        Event::Commit(Commit {
            repo: repo.into(),
            rev: None,
            seq,
            ops: vec![crate::entry::Op {
                uri: format!("at://{repo}/{collection}/3k"),
                collection: collection.into(),
                rkey: "3k".into(),
                write: None,
            }],
            prev_data: None,
            data: None,
            resync: None,
        })
    }

    #[test]
    fn the_actor_row_carries_progress_only_for_commits_no_own_state_row_records() {
        let events = [
            delete_of("did:plc:a", LIKE, 10),
            delete_of("did:plc:b", "app.bsky.graph.block", 11),
            commit("did:plc:c", 12),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let batch = Batch::collect(&refs);
        // The like's row keeps seq 10 itself.
        assert!(!batch.actors["did:plc:a"].changes_row());
        assert_eq!(batch.actors["did:plc:a"].progress, Some((10, None)));
        // Blocks live in `records`, and a commit without ops leaves no row.
        assert!(batch.actors["did:plc:b"].changes_row());
        assert!(batch.actors["did:plc:c"].changes_row());
    }

    #[test]
    fn commits_at_or_before_a_deletion_are_left_out() {
        let events = [commit("did:plc:a", 10), commit("did:plc:b", 10)];
        let refs: Vec<&Event> = events.iter().collect();
        let batch = Batch::collect(&refs);
        assert_eq!(batch.actors.len(), 2);
        assert!(batch.deleting().is_empty());
        let deleted = HashMap::from([("did:plc:a", 10)]);
        assert!(batch.candidates(&deleted).is_empty());
    }
}
