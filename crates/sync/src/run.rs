//! The backfill loop: enumerate the sources into the queue, and let
//! `concurrency` tasks claim, fetch, verify and load repos until the queue
//! is drained (or forever, beside a live index).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skyhose_identity::{KeyError, KeySource};
use skyhose_index::{RepoLoader, RepoRecord, RepoState};
use skyhose_proto::repo::{read_repo, RepoLimits};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::batch::{Batcher, LoadClock};
use crate::fetch::{self, Failure};
use crate::hosts::Hosts;
use crate::http::HttpClient;
use crate::queue::{Claim, Queue};
use crate::{BackfillConfig, SyncError};

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackfillSummary {
    pub repos_done: u64,
    pub repos_failed: u64,
    pub records: u64,
    pub bytes: u64,
    /// Where the time went, summed over the tasks.
    pub timings: Timings,
}

/// Time spent in each step, summed over the tasks that ran it at once (so
/// the sum can exceed the run's wall time).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Timings {
    /// Waiting for `getRepo` answers, bodies included.
    pub fetch: Duration,
    /// `read_repo`: the CAR, the MST, record CIDs and the signature.
    pub verify: Duration,
    /// Record blocks written as data-model JSON.
    pub json: Duration,
    /// Load transactions, from taking a connection to the commit.
    pub load: Duration,
    /// Load transactions run.
    pub batches: u64,
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    fetch_nanos: AtomicU64,
    verify_nanos: AtomicU64,
    json_nanos: AtomicU64,
}

/// A running backfill: shared by its tasks, and by a live index that
/// queues accounts it meets for the first time.
pub struct Backfill {
    config: BackfillConfig,
    queue: Queue,
    hosts: Arc<Hosts>,
    keys: Arc<dyn KeySource>,
    batcher: Batcher,
    load_clock: Arc<LoadClock>,
    /// Verifications running at once: one per core. More only adds
    /// threads, each with its own allocator heap, and no speed.
    verifying: tokio::sync::Semaphore,
    limits: RepoLimits,
    counters: Counters,
    listing_done: AtomicBool,
}

impl Backfill {
    /// Connects, migrates the schema, and builds the HTTP side; `keys`
    /// replaces the DID-document key lookup when given.
    pub async fn connect(
        config: BackfillConfig,
        keys: Option<Arc<dyn KeySource>>,
    ) -> Result<Arc<Backfill>, SyncError> {
        if config.concurrency == 0 {
            return Err(SyncError::Config("concurrency must be at least 1".into()));
        }
        if config.sources.is_empty() && !config.dids.is_empty() {
            return Err(SyncError::Config(
                "--did needs a --source to fetch from".into(),
            ));
        }
        skyhose_index::ensure_database(&config.database_url).await?;
        let pool = skyhose_index::connect_pool(
            &config.database_url,
            config.concurrency + config.batch.loaders + 2,
        )?;
        skyhose_index::migrate(&pool).await?;
        let http = HttpClient::new(config.request_timeout, config.max_repo_bytes)?;
        let hosts = Arc::new(Hosts::new(http, config.per_host));
        let keys = keys
            .unwrap_or_else(|| Arc::new(skyhose_identity::Resolver::new(config.identity.clone())));
        let limits = RepoLimits {
            max_car_bytes: config.max_repo_bytes,
            ..RepoLimits::default()
        };
        let load_clock = Arc::new(LoadClock::default());
        let batcher = Batcher::start(
            config.batch,
            pool.clone(),
            Arc::new(RepoLoader::new(config.repo_sync)),
            load_clock.clone(),
        );
        Ok(Arc::new(Backfill {
            queue: Queue::new(pool.clone()),
            hosts,
            keys,
            batcher,
            load_clock,
            verifying: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            limits,
            counters: Counters::default(),
            listing_done: AtomicBool::new(false),
            config,
        }))
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Queues `dids` to be loaded from the PDS each DID document names
    /// (the first source when it names none); repos already queued are left
    /// alone.
    pub async fn enqueue(&self, dids: &[String]) -> Result<u64, SyncError> {
        self.queue.enqueue(None, dids, "requested").await
    }

    /// Runs until drained (when `exit_when_drained`) or cancelled.
    pub async fn run(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> Result<BackfillSummary, SyncError> {
        if let Some(source) = self.config.sources.first() {
            if !self.config.dids.is_empty() {
                self.queue.requeue(source, &self.config.dids).await?;
            }
        }
        let lister = {
            let this = self.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let result = if this.config.enumerate {
                    this.enumerate(&cancel).await
                } else {
                    Ok(())
                };
                this.listing_done.store(true, Ordering::SeqCst);
                result
            })
        };
        let progress = {
            let this = self.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { this.progress(cancel).await })
        };
        let mut workers = Vec::new();
        for _ in 0..self.config.concurrency {
            let this = self.clone();
            let cancel = cancel.clone();
            workers.push(tokio::spawn(async move { this.work(cancel).await }));
        }
        let mut first_error = None;
        for worker in workers {
            match worker.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    cancel.cancel();
                    first_error.get_or_insert(err);
                }
                Err(err) => {
                    cancel.cancel();
                    first_error.get_or_insert(SyncError::Config(format!("worker task: {err}")));
                }
            }
        }
        cancel.cancel();
        progress.abort();
        match lister.await {
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(err) if !err.is_cancelled() => {
                first_error.get_or_insert(SyncError::Config(format!("listing task: {err}")));
            }
            _ => {}
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        Ok(self.summary())
    }

    fn summary(&self) -> BackfillSummary {
        BackfillSummary {
            repos_done: self.counters.done.load(Ordering::Relaxed),
            repos_failed: self.counters.failed.load(Ordering::Relaxed),
            records: self.counters.records.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            timings: Timings {
                fetch: nanos(&self.counters.fetch_nanos),
                verify: nanos(&self.counters.verify_nanos),
                json: nanos(&self.counters.json_nanos),
                load: nanos(&self.load_clock.nanos),
                batches: self.load_clock.batches.load(Ordering::Relaxed),
            },
        }
    }

    /// Lists every source into the queue, page by page from where the last
    /// run stopped. A source that fails is logged and skipped for this run.
    async fn enumerate(&self, cancel: &CancellationToken) -> Result<(), SyncError> {
        for source in &self.config.sources {
            let bases = match fetch::list_hosts(&self.hosts, source).await {
                Ok(Some(hosts)) => hosts,
                Ok(None) => vec![source.clone()],
                Err(failure) => {
                    warn!(source, ?failure, "listing the source's hosts failed");
                    metrics::counter!("skyhose_backfill_listing_failures_total").increment(1);
                    continue;
                }
            };
            for base in bases {
                self.list_base(&base, cancel).await?;
                if cancel.is_cancelled() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn list_base(&self, base: &str, cancel: &CancellationToken) -> Result<(), SyncError> {
        let (mut cursor, complete) = self.queue.source(base).await?;
        if complete {
            return Ok(());
        }
        let mut failures = 0u32;
        while !cancel.is_cancelled() {
            match fetch::list_repos(&self.hosts, base, cursor.as_deref()).await {
                Ok((dids, next)) => {
                    failures = 0;
                    self.queue
                        .listed_page(base, base, &dids, next.as_deref())
                        .await?;
                    metrics::counter!("skyhose_backfill_listed_total").increment(dids.len() as u64);
                    match next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(()),
                    }
                }
                Err(Failure::RateLimited { wait }) => pause(wait, cancel).await,
                Err(Failure::Transient { error, .. }) if failures < 5 => {
                    failures += 1;
                    warn!(base, error, "listing repos failed; trying again");
                    pause(backoff(failures as i32), cancel).await;
                }
                Err(failure) => {
                    warn!(
                        base,
                        ?failure,
                        "listing repos failed; the next run goes on from here"
                    );
                    metrics::counter!("skyhose_backfill_listing_failures_total").increment(1);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn work(&self, cancel: CancellationToken) -> Result<(), SyncError> {
        let mut idle_checks = 0u32;
        while !cancel.is_cancelled() {
            let claims = self.queue.claim(1, self.config.reclaim_after).await?;
            if claims.is_empty() {
                if self.config.exit_when_drained
                    && self.listing_done.load(Ordering::SeqCst)
                    && self.queue.open().await? == 0
                {
                    return Ok(());
                }
                idle_checks = idle_checks.saturating_add(1);
                let wait = Duration::from_millis(50 * u64::from(idle_checks.min(20)));
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            idle_checks = 0;
            for claim in claims {
                // A repo half done when cancelled stays `running` and is
                // claimed again after `reclaim_after`; dropping it here
                // would lose no data either way.
                self.process(claim).await?;
            }
        }
        Ok(())
    }

    /// Fetches, verifies and loads one repo and records the outcome; only
    /// database failures of the queue or the index are errors.
    async fn process(&self, claim: Claim) -> Result<(), SyncError> {
        let outcome = self.load(&claim).await;
        match outcome {
            Ok(Loaded {
                rev,
                records,
                bytes,
            }) => {
                self.queue
                    .done(&claim.did, &rev, records as i64, bytes as i64)
                    .await?;
                self.counters.done.fetch_add(1, Ordering::Relaxed);
                self.counters.records.fetch_add(records, Ordering::Relaxed);
                self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                metrics::counter!("skyhose_backfill_repos_total", "result" => "done").increment(1);
                metrics::counter!("skyhose_backfill_records_total").increment(records);
                metrics::counter!("skyhose_backfill_bytes_total").increment(bytes);
            }
            Err(Outcome::Failure(Failure::RateLimited { wait })) => {
                self.queue
                    .retry(
                        &claim.did,
                        "rate_limited",
                        "host asked to wait",
                        wait,
                        false,
                    )
                    .await?;
            }
            Err(Outcome::Failure(Failure::Transient { reason, error }))
                if claim.attempts < self.config.max_attempts =>
            {
                metrics::counter!("skyhose_backfill_retries_total", "reason" => reason)
                    .increment(1);
                self.queue
                    .retry(&claim.did, reason, &error, backoff(claim.attempts), true)
                    .await?;
            }
            Err(Outcome::Failure(
                Failure::Transient { reason, error } | Failure::Permanent { reason, error },
            )) => {
                warn!(did = claim.did, reason, error, "repo not loaded");
                metrics::counter!("skyhose_backfill_repos_total", "result" => "failed", "reason" => reason)
                    .increment(1);
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.queue.fail(&claim.did, reason, &error).await?;
            }
            Err(Outcome::Database(err)) => return Err(err),
        }
        Ok(())
    }

    async fn load(&self, claim: &Claim) -> Result<Loaded, Outcome> {
        let key = match self.keys.key(&claim.did).await {
            Ok(key) => key,
            Err(err @ KeyError::Unresolvable { .. }) => {
                return Err(Outcome::Failure(Failure::Permanent {
                    reason: "did_unresolvable",
                    error: err.to_string(),
                }))
            }
            Err(err @ KeyError::Transient { .. }) => {
                return Err(Outcome::Failure(Failure::Transient {
                    reason: "did_resolution",
                    error: err.to_string(),
                }))
            }
        };
        let host = match &claim.host {
            Some(host) => host.clone(),
            None => match self.keys.pds(&claim.did).await {
                Some(pds) => pds,
                None => self.config.sources.first().cloned().ok_or_else(|| {
                    Outcome::Failure(Failure::Permanent {
                        reason: "no_host",
                        error: format!(
                            "the DID document of {} names no PDS and no source is configured",
                            claim.did
                        ),
                    })
                })?,
            },
        };
        let fetching = Instant::now();
        let car = fetch::get_repo(&self.hosts, &host, &claim.did)
            .await
            .map_err(Outcome::Failure)?;
        add_nanos(&self.counters.fetch_nanos, fetching);
        let bytes = car.len() as u64;
        let did = claim.did.clone();
        let limits = self.limits.clone();
        // Hashing and signature checks are CPU work: off the runtime's threads.
        let permit = self.verifying.acquire().await.map_err(|e| {
            Outcome::Failure(Failure::Transient {
                reason: "verify_task",
                error: e.to_string(),
            })
        })?;
        let (state, clock) =
            tokio::task::spawn_blocking(move || verified_state(&car, &did, &key, &limits))
                .await
                .map_err(|e| {
                    Outcome::Failure(Failure::Transient {
                        reason: "verify_task",
                        error: e.to_string(),
                    })
                })??;
        self.counters
            .verify_nanos
            .fetch_add(clock.verify.as_nanos() as u64, Ordering::Relaxed);
        self.counters
            .json_nanos
            .fetch_add(clock.json.as_nanos() as u64, Ordering::Relaxed);
        drop(permit);
        let records = state.records.len() as u64;
        let rev = state.rev.clone();
        let report = self.batcher.load(state).await.map_err(Outcome::Database)?;
        for (path, problem) in &report.rejected {
            warn!(did = report.did, path, problem, "record not indexed");
        }
        Ok(Loaded {
            rev,
            records,
            bytes,
        })
    }

    async fn progress(&self, cancel: CancellationToken) {
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64, 0u64, 0u64);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.config.log_every) => {}
            }
            let now = Instant::now();
            let done = self.counters.done.load(Ordering::Relaxed);
            let records = self.counters.records.load(Ordering::Relaxed);
            let bytes = self.counters.bytes.load(Ordering::Relaxed);
            let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
            let repos_rate = (done - last.1) as f64 / secs;
            let open = self.queue.open().await.unwrap_or(-1);
            let overall = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            let eta = if overall > 0.0 && open >= 0 {
                format!("{:.0}s", open as f64 / overall)
            } else {
                "?".to_owned()
            };
            info!(
                "backfill: {done} repos done, {open} to go, {} failed; {repos_rate:.1} repos/s, {:.0} records/s, {:.2} MB/s; ETA {eta}",
                self.counters.failed.load(Ordering::Relaxed),
                (records - last.2) as f64 / secs,
                (bytes - last.3) as f64 / secs / 1e6,
            );
            last = (now, done, records, bytes);
        }
    }
}

struct Loaded {
    rev: String,
    records: u64,
    bytes: u64,
}

enum Outcome {
    Failure(Failure),
    Database(SyncError),
}

impl From<Failure> for Outcome {
    fn from(failure: Failure) -> Self {
        Outcome::Failure(failure)
    }
}

/// How long one repo's verification and JSON writing took.
struct VerifyClock {
    verify: Duration,
    json: Duration,
}

fn nanos(counter: &AtomicU64) -> Duration {
    Duration::from_nanos(counter.load(Ordering::Relaxed))
}

fn add_nanos(counter: &AtomicU64, since: Instant) {
    counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// The repo verified and its records written as the index stores them.
fn verified_state(
    car: &[u8],
    did: &str,
    key: &skyhose_proto::crypto::PublicKey,
    limits: &RepoLimits,
) -> Result<(RepoState, VerifyClock), Failure> {
    let started = Instant::now();
    let repo = read_repo(car, did, Some(key), limits).map_err(|err| {
        if ends_early(&err) {
            // A cut transfer, not a bad repo: worth fetching again.
            Failure::Transient {
                reason: "truncated_car",
                error: err.to_string(),
            }
        } else {
            Failure::Permanent {
                reason: err.reason(),
                error: err.to_string(),
            }
        }
    })?;
    let verified = Instant::now();
    let mut records = Vec::with_capacity(repo.records.len());
    for record in repo.records {
        let mut json = String::with_capacity(record.block.len() * 2);
        match skyhose_proto::datamodel::write_record_json(&record.block, &mut json) {
            Ok(()) => records.push(RepoRecord {
                collection: record.collection,
                rkey: record.rkey,
                cid: record.cid.to_string(),
                json,
            }),
            Err(problem) => {
                metrics::counter!("skyhose_backfill_records_rejected_total").increment(1);
                warn!(
                    did,
                    collection = record.collection,
                    rkey = record.rkey,
                    problem,
                    "record not indexed"
                );
            }
        }
    }
    let clock = VerifyClock {
        verify: verified.duration_since(started),
        json: verified.elapsed(),
    };
    Ok((
        RepoState {
            did: did.to_owned(),
            rev: repo.commit.rev,
            data: Some(repo.commit.data.to_string()),
            records,
        },
        clock,
    ))
}

/// Waits `wait`, or less when cancelled: a process beside a live index
/// stops with it, not after its listing's backoff.
async fn pause(wait: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}

/// Whether the CAR stops inside its header, a block or a length prefix.
fn ends_early(err: &skyhose_proto::repo::RepoError) -> bool {
    use skyhose_proto::WireError;
    matches!(
        err,
        skyhose_proto::repo::RepoError::BadCar(
            WireError::Truncated(_)
                | WireError::BadCar(
                    "block truncated" | "header truncated" | "varint runs past the end"
                )
        )
    )
}

/// Delay before attempt `attempts + 1`: 2, 4, 8 ... seconds, at most 5 minutes.
fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(1, 8)).min(Duration::from_secs(300))
}

/// Runs a backfill to the end (or until cancelled).
pub async fn run(
    config: BackfillConfig,
    keys: Option<Arc<dyn KeySource>>,
    cancel: CancellationToken,
) -> Result<BackfillSummary, SyncError> {
    let backfill = Backfill::connect(config, keys).await?;
    backfill.run(cancel).await
}
