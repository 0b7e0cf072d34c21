//! Writing whole repos (backfill): each repo becomes one commit at its rev
//! that creates every record it holds and deletes every record the index
//! holds live for that repo and the repo lacks, applied by [`apply_batch`]
//! like any commit from the stream. The per-record rev rule therefore holds
//! across both paths: a live write newer than the repo's rev survives the
//! load, an older one is overwritten, tombstones stay, and counts and
//! notifications change only with a record's live state, so loading a repo
//! twice, or its live events before, during or after the load, ends equal.

use deadpool_postgres::Client;

use crate::apply::{apply_batch, KnownActors, DEFAULT_KNOWN_ACTORS};
use crate::entry::{delete_op, record_op, Commit, Event};
use crate::error::IndexError;

/// The seq of a backfilled commit. A repo has no relay seq; 0 sorts before
/// every relay event, so:
/// - a repo of an account whose deletion the index has recorded is not
///   loaded (its commit is at or below the deletion's seq), which is what the
///   deletion means;
/// - ordering between a backfilled write and a live one is by rev, which
///   both have; seq only breaks ties at the same rev, where the live write
///   (same content, by the rev's definition) keeps its seq;
/// - notifications a load creates carry seq 0 and so list after every live
///   notification, as the oldest: their time is the record's `createdAt`,
///   not when they were loaded.
pub const BACKFILL_SEQ: i64 = 0;

/// One record of a repo, its data-model JSON written by
/// `skyhose_proto::json::push_record`.
#[derive(Debug, Clone)]
pub struct RepoRecord {
    pub collection: String,
    pub rkey: String,
    pub cid: String,
    pub json: String,
}

/// A verified repo at `rev`, with every record it holds.
#[derive(Debug, Clone)]
pub struct RepoState {
    pub did: String,
    pub rev: String,
    /// The MST root of the commit, kept as the repo's root at `rev` when
    /// repo sync is on, so later live commits are checked against it.
    pub data: Option<String>,
    pub records: Vec<RepoRecord>,
}

/// What loading one repo did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepoLoaded {
    pub did: String,
    /// Records of the repo written (or already current).
    pub records: u64,
    /// Records the index held live for the repo that it no longer has.
    pub deletes: u64,
    /// Records the index would not take, with the reason (the same reasons
    /// a live commit's record is refused for); the others still load.
    pub rejected: Vec<(String, String)>,
}

/// Loads repos into the index; one per process, shared by its tasks.
#[derive(Debug)]
pub struct RepoLoader {
    known: KnownActors,
}

impl Default for RepoLoader {
    fn default() -> Self {
        RepoLoader::new(false)
    }
}

impl RepoLoader {
    /// `repo_sync`: loads keep the repos' roots and queue the accounts the
    /// loaded records point at, as live batches do beside a backfill.
    pub fn new(repo_sync: bool) -> Self {
        RepoLoader {
            known: KnownActors::new(DEFAULT_KNOWN_ACTORS).with_repo_sync(repo_sync),
        }
    }

    /// Writes `repos` in one batch (one transaction, as the stream path's
    /// batches); the records each changed are counted in the result.
    pub async fn load(
        &self,
        client: &mut Client,
        repos: &[RepoState],
    ) -> Result<Vec<RepoLoaded>, IndexError> {
        if repos.is_empty() {
            return Ok(Vec::new());
        }
        let dids: Vec<&str> = repos.iter().map(|repo| repo.did.as_str()).collect();
        let held = live_paths_of(client, &dids).await?;
        let mut events = Vec::with_capacity(repos.len());
        let mut loaded = Vec::with_capacity(repos.len());
        for repo in repos {
            let mut report = RepoLoaded {
                did: repo.did.clone(),
                ..RepoLoaded::default()
            };
            let mut ops = Vec::with_capacity(repo.records.len());
            let mut present = std::collections::HashSet::with_capacity(repo.records.len());
            for record in &repo.records {
                present.insert((record.collection.as_str(), record.rkey.as_str()));
                match record_op(
                    &repo.did,
                    &record.collection,
                    &record.rkey,
                    &record.cid,
                    record.json.clone(),
                ) {
                    Ok(op) => {
                        ops.push(op);
                        report.records += 1;
                    }
                    Err(problem) => {
                        metrics::counter!("skyhose_backfill_records_rejected_total").increment(1);
                        report
                            .rejected
                            .push((format!("{}/{}", record.collection, record.rkey), problem));
                    }
                }
            }
            for (did, collection, rkey) in &held {
                if did == &repo.did && !present.contains(&(collection.as_str(), rkey.as_str())) {
                    ops.push(delete_op(&repo.did, collection, rkey));
                    report.deletes += 1;
                }
            }
            events.push(Event::Commit(Commit {
                repo: repo.did.clone(),
                rev: Some(repo.rev.clone()),
                seq: BACKFILL_SEQ,
                ops,
                prev_data: None,
                data: repo.data.clone(),
                resync: None,
            }));
            loaded.push(report);
        }
        let refs: Vec<&Event> = events.iter().collect();
        apply_batch(client, &refs, &[], &self.known).await?;
        Ok(loaded)
    }
}

/// `(did, collection, rkey)` of every live record of `dids`. Read before
/// the batch's transaction: a live record created meanwhile at a rev below
/// the repo's is one the repo had deleted by its rev, and the stream brings
/// that delete too.
async fn live_paths_of(
    client: &Client,
    dids: &[&str],
) -> Result<Vec<(String, String, String)>, IndexError> {
    let statement = client
        .prepare_cached(&crate::apply::LIVE_RECORDS_OF)
        .await
        .map_err(IndexError::pg("preparing the live records of repos"))?;
    client
        .query(&statement, &[&dids])
        .await
        .map_err(IndexError::pg("reading the live records of repos"))?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("did")
                    .map_err(IndexError::pg("reading a live record's did"))?,
                row.try_get("collection")
                    .map_err(IndexError::pg("reading a live record's collection"))?,
                row.try_get("rkey")
                    .map_err(IndexError::pg("reading a live record's rkey"))?,
            ))
        })
        .collect()
}
