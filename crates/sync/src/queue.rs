//! The durable work queue in PostgreSQL (`backfill_repos`,
//! `backfill_sources`, migration 0015). Rows are claimed with `FOR UPDATE
//! SKIP LOCKED`, so any number of processes share one queue; a claim older
//! than the reclaim time is taken to be a dead process's and claimed again.

use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;

use crate::SyncError;

/// One claimed repo.
#[derive(Debug, Clone)]
pub struct Claim {
    pub did: String,
    /// `None`: the PDS its DID document names.
    pub host: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// Counts by state and the latest failures, for `skyhose backfill status`.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub pending: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
    pub records: i64,
    pub bytes: i64,
    /// `(reason, state, repos)` for each reason a repo was queued for
    /// (`listed`, `first_seen`, `requested`, `resync:<cause>`), by reason
    /// then state.
    pub by_reason: Vec<(String, String, i64)>,
    /// `(did, reason, error)`, newest first.
    pub last_errors: Vec<(String, String, String)>,
    /// `(source, complete)` of each enumerated source.
    pub sources: Vec<(String, bool)>,
}

/// What `skyhose backfill status` prints.
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "repos: {} pending, {} running, {} done, {} failed; {} records, {:.1} MB loaded",
            self.pending,
            self.running,
            self.done,
            self.failed,
            self.records,
            self.bytes as f64 / 1e6
        )?;
        let mut reasons = self.by_reason.iter().peekable();
        while let Some((reason, state, n)) = reasons.next() {
            write!(f, "  {reason}: {n} {state}")?;
            while let Some((_, state, n)) = reasons.next_if(|(next, _, _)| next == reason) {
                write!(f, ", {n} {state}")?;
            }
            writeln!(f)?;
        }
        for (source, complete) in &self.sources {
            let listed = if *complete {
                "listed"
            } else {
                "listing unfinished"
            };
            writeln!(f, "source {source}: {listed}")?;
        }
        if !self.last_errors.is_empty() {
            writeln!(f, "latest failures:")?;
            for (did, reason, error) in &self.last_errors {
                writeln!(f, "  {did} {reason}: {error}")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Queue {
    pool: Pool,
}

fn col<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r Row,
    name: &str,
) -> Result<T, SyncError> {
    row.try_get(name)
        .map_err(|e| SyncError::db(format!("reading column {name}"), e))
}

impl Queue {
    pub fn new(pool: Pool) -> Self {
        Queue { pool }
    }

    async fn client(&self) -> Result<Object, SyncError> {
        self.pool
            .get()
            .await
            .map_err(|e| SyncError::Pool(e.to_string()))
    }

    /// Adds repos to load from `host` (`None`: the PDS each DID document
    /// names), queued for `reason`; repos already queued keep their row.
    pub async fn enqueue(
        &self,
        host: Option<&str>,
        dids: &[String],
        reason: &str,
    ) -> Result<u64, SyncError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO backfill_repos (did, host, reason) \
                 SELECT d, $2, $3 FROM unnest($1::text[]) AS d \
                 ON CONFLICT (did) DO NOTHING",
                &[&dids, &host, &reason],
            )
            .await
            .map_err(|e| SyncError::db("queueing repos", e))
    }

    /// Queues repos to be fetched again from `host`, whatever their state,
    /// unless a worker holds them now (`--did`).
    pub async fn requeue(&self, host: &str, dids: &[String]) -> Result<u64, SyncError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO backfill_repos (did, host, reason) \
                 SELECT d, $2, 'requested' FROM unnest($1::text[]) AS d \
                 ON CONFLICT (did) DO UPDATE SET state = 'pending', host = EXCLUDED.host, \
                   reason = EXCLUDED.reason, attempts = 0, not_before = now(), updated_at = now() \
                 WHERE backfill_repos.state <> 'running'",
                &[&dids, &host],
            )
            .await
            .map_err(|e| SyncError::db("requeueing repos", e))
    }

    /// Claims due repos: up to `n` pending ones and up to `n` running ones
    /// whose claim is older than `reclaim_after`.
    pub async fn claim(&self, n: i64, reclaim_after: Duration) -> Result<Vec<Claim>, SyncError> {
        let client = self.client().await?;
        let reclaim = reclaim_after.as_secs_f64();
        let statement = client
            .prepare_cached(
                "WITH due AS ( \
                   SELECT did FROM backfill_repos WHERE state = 'pending' AND not_before <= now() \
                   ORDER BY not_before LIMIT $1 FOR UPDATE SKIP LOCKED), \
                 stale AS ( \
                   SELECT did FROM backfill_repos WHERE state = 'running' \
                     AND claimed_at < now() - make_interval(secs => $2) \
                   ORDER BY claimed_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 UPDATE backfill_repos r SET state = 'running', claimed_at = now(), \
                   attempts = r.attempts + 1, updated_at = now() \
                 WHERE r.did IN (SELECT did FROM due UNION SELECT did FROM stale) \
                 RETURNING r.did, r.host, r.attempts",
            )
            .await
            .map_err(|e| SyncError::db("preparing the claim", e))?;
        client
            .query(&statement, &[&n, &reclaim])
            .await
            .map_err(|e| SyncError::db("claiming repos", e))?
            .iter()
            .map(|row| {
                Ok(Claim {
                    did: col(row, "did")?,
                    host: col(row, "host")?,
                    attempts: col(row, "attempts")?,
                })
            })
            .collect()
    }

    pub async fn done(
        &self,
        did: &str,
        rev: &str,
        records: i64,
        bytes: i64,
    ) -> Result<(), SyncError> {
        self.client()
            .await?
            .execute(
                "UPDATE backfill_repos SET state = CASE WHEN again THEN 'pending' ELSE 'done' END, \
                   again = false, not_before = now(), rev = $2, records = $3, bytes = $4, \
                   error = NULL, error_reason = NULL, claimed_at = NULL, updated_at = now() \
                 WHERE did = $1",
                &[&did, &rev, &records, &bytes],
            )
            .await
            .map_err(|e| SyncError::db("marking a repo done", e))?;
        Ok(())
    }

    /// A failure that will not change on a retry (unless a resync was
    /// asked for meanwhile: then the repo is tried again).
    pub async fn fail(&self, did: &str, reason: &str, error: &str) -> Result<(), SyncError> {
        self.client()
            .await?
            .execute(
                "UPDATE backfill_repos SET state = CASE WHEN again THEN 'pending' ELSE 'failed' END, \
                   attempts = CASE WHEN again THEN 0 ELSE attempts END, again = false, \
                   error_reason = $2, error = $3, claimed_at = NULL, updated_at = now() \
                 WHERE did = $1",
                &[&did, &reason, &error],
            )
            .await
            .map_err(|e| SyncError::db("marking a repo failed", e))?;
        Ok(())
    }

    /// Puts a repo back to be tried again after `delay`, keeping the error.
    /// `count_attempt` false gives the attempt back (rate limits).
    pub async fn retry(
        &self,
        did: &str,
        reason: &str,
        error: &str,
        delay: Duration,
        count_attempt: bool,
    ) -> Result<(), SyncError> {
        let delay = delay.as_secs_f64();
        let give_back: i32 = if count_attempt { 0 } else { 1 };
        self.client()
            .await?
            .execute(
                "UPDATE backfill_repos SET state = 'pending', error_reason = $2, error = $3, \
                   not_before = now() + make_interval(secs => $4), attempts = attempts - $5, \
                   again = false, claimed_at = NULL, updated_at = now() WHERE did = $1",
                &[&did, &reason, &error, &delay, &give_back],
            )
            .await
            .map_err(|e| SyncError::db("requeueing a repo", e))?;
        Ok(())
    }

    /// Where enumeration of `source` stopped: the next cursor and whether
    /// the listing is complete.
    pub async fn source(&self, source: &str) -> Result<(Option<String>, bool), SyncError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT cursor, complete FROM backfill_sources WHERE source = $1",
                &[&source],
            )
            .await
            .map_err(|e| SyncError::db("reading a source's cursor", e))?;
        match row {
            Some(row) => Ok((col(&row, "cursor")?, col(&row, "complete")?)),
            None => Ok((None, false)),
        }
    }

    /// Queues one listed page and moves the source's cursor past it, in
    /// one transaction, so a crash lists the page again or not at all.
    pub async fn listed_page(
        &self,
        source: &str,
        host: &str,
        dids: &[String],
        next: Option<&str>,
    ) -> Result<u64, SyncError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| SyncError::db("starting a listed page", e))?;
        let added = tx
            .execute(
                "INSERT INTO backfill_repos (did, host) SELECT d, $2 FROM unnest($1::text[]) AS d \
                 ON CONFLICT (did) DO NOTHING",
                &[&dids, &host],
            )
            .await
            .map_err(|e| SyncError::db("queueing listed repos", e))?;
        tx.execute(
            "INSERT INTO backfill_sources (source, cursor, complete) VALUES ($1, $2, $3) \
             ON CONFLICT (source) DO UPDATE SET cursor = EXCLUDED.cursor, \
               complete = EXCLUDED.complete, updated_at = now()",
            &[&source, &next, &next.is_none()],
        )
        .await
        .map_err(|e| SyncError::db("moving a source's cursor", e))?;
        tx.commit()
            .await
            .map_err(|e| SyncError::db("committing a listed page", e))?;
        Ok(added)
    }

    /// Repos not finished yet (pending or running).
    pub async fn open(&self) -> Result<i64, SyncError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) AS open FROM backfill_repos WHERE state IN ('pending', 'running')",
                &[],
            )
            .await
            .map_err(|e| SyncError::db("counting open repos", e))?;
        col(&row, "open")
    }

    pub async fn status(&self, errors: i64) -> Result<Status, SyncError> {
        let client = self.client().await?;
        let mut status = Status::default();
        for row in client
            .query(
                "SELECT state, reason, count(*) AS n, coalesce(sum(records), 0)::int8 AS records, \
                   coalesce(sum(bytes), 0)::int8 AS bytes FROM backfill_repos \
                 GROUP BY reason, state ORDER BY reason, state",
                &[],
            )
            .await
            .map_err(|e| SyncError::db("counting repos by state", e))?
        {
            let state: String = col(&row, "state")?;
            let n: i64 = col(&row, "n")?;
            status.records += col::<i64>(&row, "records")?;
            status.bytes += col::<i64>(&row, "bytes")?;
            match state.as_str() {
                "pending" => status.pending += n,
                "running" => status.running += n,
                "done" => status.done += n,
                _ => status.failed += n,
            }
            status.by_reason.push((col(&row, "reason")?, state, n));
        }
        for row in client
            .query(
                "SELECT did, coalesce(error_reason, '') AS reason, coalesce(error, '') AS error \
                 FROM backfill_repos WHERE state = 'failed' ORDER BY updated_at DESC LIMIT $1",
                &[&errors],
            )
            .await
            .map_err(|e| SyncError::db("reading the last errors", e))?
        {
            status
                .last_errors
                .push((col(&row, "did")?, col(&row, "reason")?, col(&row, "error")?));
        }
        for row in client
            .query(
                "SELECT source, complete FROM backfill_sources ORDER BY source",
                &[],
            )
            .await
            .map_err(|e| SyncError::db("reading sources", e))?
        {
            status
                .sources
                .push((col(&row, "source")?, col(&row, "complete")?));
        }
        Ok(status)
    }
}
