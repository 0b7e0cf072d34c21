//! Repo sync bookkeeping in the batch transaction, when backfill runs
//! beside the index ([`KnownActors::with_repo_sync`]): each repo's MST root
//! at its newest commit (`repo_roots`), and the repos the backfill queue
//! must load (`backfill_repos`):
//! - `first_seen`: an author the process has not seen yet, and the owners
//!   of the records a follow, like, repost or reply points at; queued once,
//!   a repo already in the queue keeps its row;
//! - `resync:<cause>`: the index can no longer trust what it holds of the
//!   repo, so it is loaded again even when it was loaded before: a `#sync`
//!   (`sync`), an `#account` `desynchronized`, a commit too big to carry
//!   its blocks (`too_big`) or with an op whose record could not be read
//!   (`unreadable_op`), and a commit whose `prevData` is not the root the
//!   index holds for the repo (`prev_data`);
//! - `resync:reactivated`: an `#account` active again, for a repo whose
//!   load failed, or is running and may fail (hosts refuse the repos of
//!   inactive accounts); a repo loaded or waiting keeps its row, since
//!   nothing it holds is in doubt.
//!
//! It runs last in the transaction, after every record and actor row is
//! locked, so the queue rows it takes never wait on a batch that waits on
//! this one.

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::Transaction;

use crate::apply::KnownActors;
use crate::db::RowExt;
use crate::entry::{Event, ACCOUNT_ACTIVE, ACCOUNT_DESYNCHRONIZED};
use crate::error::IndexError;
use skyhose_proto::syntax::is_did;

pub(crate) const FIRST_SEEN: &str = "first_seen";

/// One point of a repo's history the batch knows: its rev and the MST
/// root before and after (each when known).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step<'a> {
    rev: &'a str,
    prev: Option<&'a str>,
    data: Option<&'a str>,
}

/// What a batch marks, gathered from its events before the transaction.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Marks<'a> {
    /// did -> `resync:<cause>` (a resync wins over a first sight).
    queue: BTreeMap<&'a str, String>,
    /// Accounts active again, without a resync in `queue`.
    reactivated: Vec<&'a str>,
    /// Causes by repo, counted once the batch commits; a reactivation is
    /// counted only when it re-queued a failed repo, which SQL tells.
    causes: Vec<&'static str>,
    /// Each repo's steps, by rev, one per rev.
    steps: BTreeMap<&'a str, Vec<Step<'a>>>,
}

impl<'a> Marks<'a> {
    /// Marks of `events`; `authors` are the batch's actors, first sights
    /// among them decided by `known`.
    pub fn collect(events: &[&'a Event], known: &KnownActors) -> Self {
        let mut marks = Marks::default();
        let mut steps: BTreeMap<&'a str, Vec<Step<'a>>> = BTreeMap::new();
        let mut seen: BTreeSet<&'a str> = BTreeSet::new();
        // Each account's last status in the batch: active or not.
        let mut active: BTreeMap<&'a str, bool> = BTreeMap::new();
        for event in events {
            match event {
                Event::Commit(commit) => {
                    seen.insert(&commit.repo);
                    if let Some(cause) = commit.resync {
                        marks.resync(&commit.repo, cause);
                    }
                    if let Some(rev) = commit.rev.as_deref() {
                        if commit.prev_data.is_some() || commit.data.is_some() {
                            steps.entry(&commit.repo).or_default().push(Step {
                                rev,
                                prev: commit.prev_data.as_deref(),
                                data: commit.data.as_deref(),
                            });
                        }
                    }
                    for op in &commit.ops {
                        let subject = op
                            .write
                            .as_ref()
                            .and_then(|write| write.facts.subject.as_deref());
                        if let Some(owner) = subject.and_then(owner_of) {
                            seen.insert(owner);
                        }
                    }
                }
                Event::Sync { did, rev, .. } => {
                    seen.insert(did);
                    marks.resync(did, "sync");
                    // The repo's root at this rev is unknown: the next
                    // commit is not compared with an older one.
                    if let Some(rev) = rev.as_deref() {
                        steps.entry(did).or_default().push(Step {
                            rev,
                            prev: None,
                            data: None,
                        });
                    }
                }
                Event::Account { did, status, .. } => {
                    seen.insert(did);
                    if status == ACCOUNT_DESYNCHRONIZED {
                        marks.resync(did, "desynchronized");
                    }
                    active.insert(did, status == ACCOUNT_ACTIVE);
                }
                Event::Identity { did, .. } => {
                    seen.insert(did);
                }
                Event::Ignored { .. } => {}
            }
        }
        for did in known.unknown(seen.into_iter()) {
            marks.queue.entry(did).or_insert_with(|| FIRST_SEEN.into());
        }
        // A resync queues the repo whatever its state already; a first
        // sight may be only this process's (known actors are not kept
        // across restarts), so it does not hide a failed load.
        for (did, _) in active.into_iter().filter(|(_, active)| *active) {
            if matches!(
                marks.queue.get(did).map(String::as_str),
                None | Some(FIRST_SEEN)
            ) {
                marks.reactivated.push(did);
            }
        }
        for steps in steps.values_mut() {
            steps.sort_by(|a, b| a.rev.cmp(b.rev));
            steps.dedup_by(|b, a| a.rev == b.rev);
        }
        marks.steps = steps;
        marks
    }

    fn resync(&mut self, did: &'a str, cause: &'static str) {
        let reason = format!("resync:{cause}");
        if self.queue.get(did) != Some(&reason) {
            self.causes.push(cause);
        }
        self.queue.insert(did, reason);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.steps.is_empty() && self.reactivated.is_empty()
    }

    /// Counts the resyncs marked, once their batch committed, with the
    /// causes only the transaction could tell ([`write`]'s answer).
    pub fn count(&self, found: &[String]) {
        for cause in self
            .causes
            .iter()
            .copied()
            .chain(found.iter().map(String::as_str))
        {
            metrics::counter!("skyhose_index_resync_marked_total", "cause" => cause.to_owned())
                .increment(1);
        }
    }
}

/// The DID owning `subject` (a record's AT-URI, or a followed DID).
fn owner_of(subject: &str) -> Option<&str> {
    let did = match subject.strip_prefix("at://") {
        Some(rest) => rest.split('/').next()?,
        None => subject,
    };
    is_did(did).then_some(did)
}

/// Chains each repo's steps newer than the root held onto it, in rev
/// order, moves the roots, and queues the marked repos (`$7`: accounts
/// active again, queued as first sights when their repo has no row, and
/// re-queued when its load failed or is running); returns the causes
/// found here: `prev_data` for each repo with a step whose `prevData` is
/// not the root before it (queued as `resync:prev_data`), `reactivated`
/// for each failed repo an active account re-queued. Steps at or below
/// the held root's rev are replays and are not compared.
const SYNC_SQL: &str = "\
WITH steps AS ( \
   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS v(did, rev, prev, data)), \
 held AS ( \
   SELECT r.did, r.rev, r.data FROM repo_roots r WHERE r.did IN (SELECT did FROM steps)), \
 chain AS ( \
   SELECT did, prev, lag(data) OVER (PARTITION BY did ORDER BY rev) AS before FROM ( \
     SELECT s.did, s.rev, s.prev, s.data FROM steps s LEFT JOIN held h ON h.did = s.did \
     WHERE h.rev IS NULL OR s.rev > h.rev \
     UNION ALL SELECT did, rev, NULL, data FROM held) AS x), \
 diverged AS ( \
   SELECT DISTINCT did FROM chain WHERE prev IS NOT NULL AND before IS NOT NULL AND prev <> before), \
 newest AS ( \
   SELECT DISTINCT ON (did) did, rev, data FROM steps ORDER BY did, rev DESC), \
 moved AS ( \
   INSERT INTO repo_roots AS r (did, rev, data) \
   SELECT did, rev, data FROM newest ORDER BY did \
   ON CONFLICT (did) DO UPDATE SET rev = EXCLUDED.rev, data = EXCLUDED.data \
   WHERE r.rev < EXCLUDED.rev), \
 marks AS ( \
   SELECT did, reason FROM unnest($5::text[], $6::text[]) AS m(did, reason) \
   UNION ALL SELECT did, 'resync:prev_data' FROM diverged \
   UNION ALL SELECT did, 'first_seen' FROM unnest($7::text[]) AS r(did)), \
 queued AS ( \
   INSERT INTO backfill_repos AS b (did, host, reason) \
   SELECT DISTINCT ON (did) did, NULL, reason FROM marks \
   ORDER BY did, reason = 'first_seen' \
   ON CONFLICT (did) DO UPDATE SET \
     reason = CASE WHEN EXCLUDED.reason = 'first_seen' THEN 'resync:reactivated' \
                   ELSE EXCLUDED.reason END, \
     host = NULL, \
     state = CASE WHEN b.state = 'running' THEN 'running' ELSE 'pending' END, \
     again = b.state = 'running', \
     attempts = CASE WHEN b.state = 'running' THEN b.attempts ELSE 0 END, \
     not_before = now(), updated_at = now() \
   WHERE EXCLUDED.reason <> 'first_seen' \
      OR (b.did = ANY($7::text[]) AND b.state IN ('failed', 'running')) \
   RETURNING b.reason) \
SELECT 'prev_data' AS cause FROM diverged \
UNION ALL SELECT 'reactivated' FROM queued WHERE reason = 'resync:reactivated'";

/// Writes `marks` in `tx`; the causes found by the transaction, one per repo.
pub(super) async fn write(
    tx: &Transaction<'_>,
    marks: &Marks<'_>,
) -> Result<Vec<String>, IndexError> {
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    let (mut dids, mut revs, mut prevs, mut roots) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (did, steps) in &marks.steps {
        for step in steps {
            dids.push(*did);
            revs.push(step.rev);
            prevs.push(step.prev);
            roots.push(step.data);
        }
    }
    let queued: Vec<&str> = marks.queue.keys().copied().collect();
    let reasons: Vec<&str> = marks.queue.values().map(String::as_str).collect();
    let statement = tx
        .prepare_cached(SYNC_SQL)
        .await
        .map_err(IndexError::pg("preparing the repo sync marks"))?;
    tx.query(
        &statement,
        &[
            &dids,
            &revs,
            &prevs,
            &roots,
            &queued,
            &reasons,
            &marks.reactivated,
        ],
    )
    .await
    .map_err(IndexError::pg("writing the repo sync marks"))?
    .iter()
    .map(|row| row.col("cause", "reading the causes of resyncs"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Commit;

    fn commit(repo: &str, rev: &str, prev: Option<&str>, data: Option<&str>) -> Event {
        Event::Commit(Commit {
            repo: repo.into(),
            rev: Some(rev.into()),
            seq: 1,
            ops: Vec::new(),
            prev_data: prev.map(Into::into),
            data: data.map(Into::into),
            resync: None,
        })
    }

    #[test]
    fn each_repo_keeps_its_steps_in_rev_order_for_the_chain_check() {
        let events = [
            commit("did:plc:a", "3k2", Some("bafyb"), Some("bafyc")),
            commit("did:plc:a", "3k1", Some("bafya"), Some("bafyb")),
            commit("did:plc:b", "3k1", Some("bafya"), Some("bafyb")),
            commit("did:plc:b", "3k2", Some("bafyx"), Some("bafyc")),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let known = KnownActors::new(10);
        known.insert_all(["did:plc:a", "did:plc:b"]);
        let marks = Marks::collect(&refs, &known);
        // Known authors and no resync cause: nothing queued here; the
        // chain is checked in SQL, against the root held.
        assert!(marks.queue.is_empty());
        let steps: Vec<(&str, Option<&str>)> = marks.steps["did:plc:a"]
            .iter()
            .map(|step| (step.rev, step.prev))
            .collect();
        assert_eq!(steps, [("3k1", Some("bafya")), ("3k2", Some("bafyb"))]);
    }

    #[test]
    fn unseen_actors_and_subject_owners_are_first_seen_and_resyncs_win() {
        let events = [
            Event::Sync {
                did: "did:plc:a".into(),
                rev: None,
                seq: 2,
            },
            Event::Identity {
                did: "did:plc:c".into(),
                handle: None,
                seq: 3,
            },
            Event::Account {
                did: "did:plc:d".into(),
                status: ACCOUNT_DESYNCHRONIZED.into(),
                seq: 4,
            },
            // Active again: below a first sight and below a resync.
            Event::Account {
                did: "did:plc:c".into(),
                status: ACCOUNT_ACTIVE.into(),
                seq: 5,
            },
            Event::Account {
                did: "did:plc:a".into(),
                status: ACCOUNT_ACTIVE.into(),
                seq: 6,
            },
            Event::Account {
                did: "did:plc:g".into(),
                status: ACCOUNT_ACTIVE.into(),
                seq: 7,
            },
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let known = KnownActors::new(10);
        known.insert_all(["did:plc:d", "did:plc:g"]);
        let marks = Marks::collect(&refs, &known);
        assert_eq!(
            marks.queue,
            BTreeMap::from([
                ("did:plc:a", "resync:sync".to_owned()),
                ("did:plc:c", FIRST_SEEN.to_owned()),
                ("did:plc:d", "resync:desynchronized".to_owned()),
            ])
        );
        assert_eq!(marks.reactivated, ["did:plc:c", "did:plc:g"]);
        assert_eq!(
            owner_of("at://did:plc:e/app.bsky.feed.post/3k"),
            Some("did:plc:e")
        );
        assert_eq!(owner_of("did:plc:f"), Some("did:plc:f"));
        assert_eq!(owner_of("at://handle.example/x/y"), None);
    }
}
