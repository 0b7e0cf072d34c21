//! What the accounts' hosts serve: each repo's signed head and its full CAR
//! at the network's current state.

use skyhose_proto::crypto::SigningKey;
use skyhose_proto::repo::{write_repo_car, Commit};

use super::{Network, Status};
use crate::wire::Cid;

/// One repo in `com.atproto.sync.listRepos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoListing {
    pub did: String,
    pub head: Cid,
    pub rev: String,
    pub active: bool,
    /// `deactivated` or `takendown` when not active.
    pub status: Option<&'static str>,
}

/// Why a host does not serve a repo, as the reference PDS's error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RepoUnavailable {
    #[error("RepoNotFound")]
    NotFound,
    #[error("RepoDeactivated")]
    Deactivated,
    #[error("RepoTakendown")]
    Takendown,
}

impl RepoUnavailable {
    pub fn error_name(self) -> &'static str {
        match self {
            RepoUnavailable::NotFound => "RepoNotFound",
            RepoUnavailable::Deactivated => "RepoDeactivated",
            RepoUnavailable::Takendown => "RepoTakendown",
        }
    }
}

impl Network {
    fn hosted(&self, did: &str) -> Result<usize, RepoUnavailable> {
        let idx = *self.by_did.get(did).ok_or(RepoUnavailable::NotFound)?;
        let actor = self.actors.get(idx).ok_or(RepoUnavailable::NotFound)?;
        match actor.status {
            _ if actor.head.is_none() => Err(RepoUnavailable::NotFound),
            Status::Deleted => Err(RepoUnavailable::NotFound),
            Status::Deactivated => Err(RepoUnavailable::Deactivated),
            Status::Takendown => Err(RepoUnavailable::Takendown),
            Status::Active => Ok(idx),
        }
    }

    /// The repos with a commit, in account order, from `start` (an index
    /// into that order, the listing's cursor), at most `limit`; and the
    /// cursor of the next page.
    pub fn list_repos(
        &self,
        start: usize,
        limit: usize,
        mut on_host: impl FnMut(&str) -> bool,
    ) -> (Vec<RepoListing>, Option<usize>) {
        let mut out = Vec::new();
        for (i, actor) in self.actors.iter().enumerate().skip(start) {
            if out.len() >= limit {
                return (out, Some(i));
            }
            let (Some((head, _)), Some(rev)) = (&actor.head, &actor.rev) else {
                continue;
            };
            if actor.status == Status::Deleted || !on_host(&actor.did) {
                continue;
            }
            out.push(RepoListing {
                did: actor.did.clone(),
                head: *head,
                rev: rev.clone(),
                active: actor.status == Status::Active,
                status: match actor.status {
                    Status::Active | Status::Deleted => None,
                    other => Some(other.as_str()),
                },
            });
        }
        (out, None)
    }

    /// `com.atproto.sync.getLatestCommit`: the head's CID and rev.
    pub fn latest_commit(&self, did: &str) -> Result<(Cid, String), RepoUnavailable> {
        let actor = self
            .actors
            .get(self.hosted(did)?)
            .ok_or(RepoUnavailable::NotFound)?;
        match (&actor.head, &actor.rev) {
            (Some((cid, _)), Some(rev)) => Ok((*cid, rev.clone())),
            _ => Err(RepoUnavailable::NotFound),
        }
    }

    /// `com.atproto.sync.getRepo`: the full CAR at the current state; with
    /// `forger`, its commit signed by that key instead of the account's.
    pub fn repo_car(
        &mut self,
        did: &str,
        forger: Option<&SigningKey>,
    ) -> Result<Vec<u8>, RepoUnavailable> {
        let idx = self.hosted(did)?;
        let actor = self.actors.get_mut(idx).ok_or(RepoUnavailable::NotFound)?;
        let (mut cid, mut block) = actor.head.clone().ok_or(RepoUnavailable::NotFound)?;
        if let (Some(forger), Ok(commit)) = (forger, Commit::decode(&block)) {
            (cid, block, _) = Commit::signed(&commit.did, commit.data, &commit.rev, None, forger);
        }
        let records = actor
            .live
            .records
            .iter()
            .map(|r| (r.cid, &*r.block))
            .collect::<Vec<_>>();
        Ok(write_repo_car(cid, &block, &mut actor.repo, records))
    }
}
