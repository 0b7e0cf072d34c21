//! The consumer-group workers: read or claim a batch, apply it in one
//! transaction, dead-letter what cannot be applied, acknowledge after commit,
//! raise the watermark. Outages of Redis or PostgreSQL are waited out.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::apply::{
    apply_batch, is_account_deletion, running_count, wait_for_transactions, KnownActors,
    CONCURRENT_WAIT_LIMIT, DEFAULT_KNOWN_ACTORS,
};
use crate::entry::{parse_entry, Event, RawEntry};
use crate::error::IndexError;
use crate::shards::Shards;
use crate::snapshot::raise_watermark;
use crate::stream::{EntryReader, Stream};
use crate::IndexConfig;

/// Totals of one `run`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexSummary {
    /// Entries applied to PostgreSQL (including ones with nothing to index).
    pub events_indexed: u64,
    pub dead_lettered: u64,
    pub batches: u64,
    /// Entries taken over from other consumers.
    pub claimed: u64,
    /// Transactions retried after a deadlock, a serialization failure or an outage.
    pub retries: u64,
}

#[derive(Default)]
struct Totals {
    events: AtomicU64,
    dead: AtomicU64,
    batches: AtomicU64,
    claimed: AtomicU64,
    retries: AtomicU64,
}

impl Totals {
    fn summary(&self) -> IndexSummary {
        IndexSummary {
            events_indexed: self.events.load(Ordering::Relaxed),
            dead_lettered: self.dead.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            claimed: self.claimed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const WATERMARK_EVERY: Duration = Duration::from_millis(500);
/// How often a worker that is out of work checks whether the stream is
/// drained, with `exit_when_drained`.
const DRAIN_CHECK_EVERY: Duration = Duration::from_millis(20);
/// How long a worker waits before looking again when the owners of the
/// events it handed over are behind.
const OWNERS_BEHIND_PAUSE: Duration = Duration::from_millis(5);

/// Creates the database and schema if needed, then runs `cfg.workers`
/// workers until `shutdown` fires (or, with `exit_when_drained`, until the
/// stream is fully acknowledged).
pub async fn run(
    cfg: IndexConfig,
    shutdown: CancellationToken,
) -> Result<IndexSummary, IndexError> {
    if cfg.workers == 0 || cfg.batch_size == 0 {
        return Err(IndexError::Config(
            "workers and batch size must be at least 1".into(),
        ));
    }
    describe_metrics();
    let pool = wait_for(&shutdown, "preparing the database", || async {
        crate::db::ensure_database(&cfg.database_url).await?;
        let pool =
            crate::db::connect_worker_pool(&cfg.database_url, cfg.workers + 2, cfg.compress_wal)?;
        crate::migrate::migrate(&pool).await?;
        Ok(pool)
    })
    .await?;
    let target = skyhose_connect::RedisTarget::parse(&cfg.redis_url)?;
    let redis = target.client()?;
    let stream = Stream {
        key: &cfg.stream_key,
        group: &cfg.group,
    };
    wait_for(&shutdown, "creating the consumer group", || async {
        let mut conn = connect(&redis).await?;
        stream.ensure_group(&mut conn).await
    })
    .await?;

    let cfg = Arc::new(cfg);
    let totals = Arc::new(Totals::default());
    let stop = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    let shards = Arc::new(Shards::new(cfg.workers));
    let known = Arc::new(KnownActors::new(DEFAULT_KNOWN_ACTORS).with_repo_sync(cfg.repo_sync));
    for index in 0..cfg.workers {
        let worker = Worker {
            index,
            shards: shards.clone(),
            known: known.clone(),
            cfg: cfg.clone(),
            name: format!("{}-{index}", cfg.consumer),
            pool: pool.clone(),
            redis: redis.clone(),
            target: target.clone(),
            totals: totals.clone(),
            stop: stop.clone(),
        };
        tasks.spawn(worker.run());
    }
    let statistics = tokio::spawn(refresh_statistics(pool.clone(), stop.clone()));
    let identity = cfg.identity.clone().map(|identity| {
        tokio::spawn(crate::identity::run(
            pool.clone(),
            Arc::new(skyhose_identity::Resolver::new(identity)),
            crate::identity::IdentityTaskOptions::default(),
            stop.clone(),
        ))
    });
    let reporter = tokio::spawn(report_progress(
        cfg.clone(),
        redis.clone(),
        totals.clone(),
        stop.clone(),
    ));
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined
            .map_err(|err| IndexError::Worker(err.to_string()))
            .and_then(|r| r);
        if let Err(err) = outcome {
            error!(error = %err, "index worker stopped");
            first_error.get_or_insert(err);
            stop.cancel();
        }
    }
    stop.cancel();
    let _ = reporter.await;
    let _ = statistics.await;
    if let Some(identity) = identity {
        let _ = identity.await;
    }
    let summary = totals.summary();
    info!(?summary, "index stopped");
    match first_error {
        Some(err) => Err(err),
        None => Ok(summary),
    }
}

/// The index's counters at zero, so that each series is exported from the
/// start, before the first event of its kind (a dead letter, a retry).
fn describe_metrics() {
    for name in [
        "skyhose_index_batches_total",
        "skyhose_index_claimed_total",
        "skyhose_index_dead_letters_total",
        "skyhose_index_events_total",
        "skyhose_index_retries_total",
        "skyhose_index_row_errors_total",
        "skyhose_index_unreadable_ops_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::counter!("skyhose_index_redos_total", "cause" => "actor_created_concurrently")
        .increment(0);
}

async fn connect(client: &redis::Client) -> Result<MultiplexedConnection, IndexError> {
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(IndexError::redis("connecting"))
}

/// Runs `attempt` until it succeeds, waiting out transient failures.
async fn wait_for<T, F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    mut attempt: F,
) -> Result<T, IndexError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, IndexError>>,
{
    let mut backoff = MIN_BACKOFF;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_transient() && !shutdown.is_cancelled() => {
                warn!(error = %err, retry_in = ?backoff, "{what} failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return Err(err),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(err) => return Err(err),
        }
    }
}

/// The most read tables, whose statistics readers' plans depend on.
const ANALYZED_TABLES: &str =
    "records, notifications, actors, post_counts, post_rows, like_rows, repost_rows, follow_rows, profiles";

/// The first refresh, when a fresh database's tables have just got rows.
const FIRST_ANALYZE: Duration = Duration::from_secs(3);
/// The statistics target of the first refresh. Plans need the tables'
/// sizes and rough distributions, which a tenth of the default sample
/// gives; with the default one it cost a second of PostgreSQL's CPU in the
/// first minute of a fresh index (3% of its time at 1M events).
const FIRST_STATISTICS_TARGET: u32 = 10;
/// Later refreshes. Each samples every table again, which costs seconds of
/// PostgreSQL time once tables are large, so they are rare: the workers'
/// own statements do not depend on statistics (their sessions never
/// choose sequential scans), and autovacuum keeps them fresh where it runs.
const ANALYZE_EVERY: Duration = Duration::from_secs(600);

/// Keeps planner statistics of the index tables from being absent or far
/// off while they grow from empty (until autovacuum gets to them).
async fn refresh_statistics(pool: Pool, stop: CancellationToken) {
    let mut wait = FIRST_ANALYZE;
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        let analyzed = async {
            let client = pool
                .get()
                .await
                .map_err(IndexError::pool("refreshing statistics"))?;
            let analyze = if first {
                format!(
                    "SET default_statistics_target = {FIRST_STATISTICS_TARGET}; \
                     ANALYZE {ANALYZED_TABLES}; RESET default_statistics_target"
                )
            } else {
                // The first refresh's setting may have stayed on this pooled
                // connection if that refresh failed halfway.
                format!("RESET default_statistics_target; ANALYZE {ANALYZED_TABLES}")
            };
            client
                .batch_execute(&analyze)
                .await
                .map_err(IndexError::pg("analyzing the index tables"))
        };
        if let Err(err) = analyzed.await {
            warn!(error = %err, "refreshing planner statistics failed");
        }
        wait = ANALYZE_EVERY;
        first = false;
    }
}

async fn report_progress(
    cfg: Arc<IndexConfig>,
    redis: redis::Client,
    totals: Arc<Totals>,
    stop: CancellationToken,
) {
    let stream = Stream {
        key: &cfg.stream_key,
        group: &cfg.group,
    };
    let mut conn: Option<MultiplexedConnection> = None;
    let mut last = totals.summary();
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.log_every) => {}
            _ = stop.cancelled() => return,
        }
        let now = totals.summary();
        let rate =
            (now.events_indexed - last.events_indexed) as f64 / last_at.elapsed().as_secs_f64();
        // The backlog is informative only: a failure to read it is not an error.
        if conn.is_none() {
            conn = connect(&redis).await.ok();
        }
        let backlog = match conn.as_mut() {
            Some(redis) => stream.backlog(redis).await.ok(),
            None => None,
        };
        if backlog.is_none() {
            conn = None;
        }
        let (pending, lag) = backlog.unwrap_or((-1, None));
        info!(
            events_per_sec = rate.round(),
            events = now.events_indexed,
            dead_lettered = now.dead_lettered,
            claimed = now.claimed,
            retries = now.retries,
            pending,
            lag = lag.unwrap_or(-1),
            "index progress"
        );
        metrics::gauge!("skyhose_index_events_per_second").set(rate);
        if let Some(lag) = lag {
            metrics::gauge!("skyhose_index_lag_entries").set(lag as f64);
        }
        last = now;
        last_at = Instant::now();
    }
}

struct Worker {
    index: usize,
    shards: Arc<Shards>,
    known: Arc<KnownActors>,
    cfg: Arc<IndexConfig>,
    name: String,
    pool: Pool,
    redis: redis::Client,
    /// The same server, for the worker's own XREADGROUP connection.
    target: skyhose_connect::RedisTarget,
    totals: Arc<Totals>,
    stop: CancellationToken,
}

/// One batch after validation.
#[derive(Default)]
struct Prepared {
    /// Applied: acknowledged by `finish`.
    good: Vec<(RawEntry, Event)>,
    dead: Vec<(RawEntry, String)>,
    /// Account deletions applied once, acknowledged after their second
    /// sweep.
    waiting: Vec<Resweep>,
}

impl Prepared {
    /// Deletions whose second sweep ran with this batch are done with it,
    /// acknowledged or, when the sweep failed for their data, dead-lettered.
    fn settle_resweeps(&mut self, swept: Vec<(RawEntry, Event)>, failed: Option<String>) {
        match failed {
            None => self.good.extend(swept),
            Some(reason) => self
                .dead
                .extend(swept.into_iter().map(|(entry, _)| (entry, reason.clone()))),
        }
    }
}

/// Account deletions committed and swept once, waiting for the
/// transactions that were running at their commit to end before they
/// sweep again and their entries are acknowledged (see `apply`). The
/// worker keeps applying batches meanwhile; the entries stay pending, so
/// the watermark stays below them and a crash leaves them to be claimed
/// and applied again.
struct Resweep {
    entries: Vec<(RawEntry, Event)>,
    running: Vec<String>,
    since: Instant,
}

impl Resweep {
    fn waiting_for(entries: Vec<(RawEntry, Event)>, running: Vec<String>) -> Self {
        Resweep {
            entries,
            running,
            since: Instant::now(),
        }
    }

    /// Deletions found ready whose second sweep did not happen: ready still.
    fn ready(entries: Vec<(RawEntry, Event)>) -> Self {
        Resweep::waiting_for(entries, Vec::new())
    }
}

/// What `apply_isolating` made of a batch, by index into it.
#[derive(Default)]
struct Isolated {
    /// Entries PostgreSQL rejects, with the reason.
    failed: Vec<(usize, String)>,
    /// Account deletions applied once, with the transactions they wait for.
    waiting: Vec<(Vec<usize>, Vec<String>)>,
    /// Why the second sweeps carried by the batch failed, if they did.
    resweep_failed: Option<String>,
}

/// How long a stopping worker waits for its deletions' second sweeps
/// before it leaves their entries pending for another consumer.
const RESWEEP_AT_STOP: Duration = Duration::from_secs(10);

impl Worker {
    async fn run(self) -> Result<(), IndexError> {
        let stream = Stream {
            key: &self.cfg.stream_key,
            group: &self.cfg.group,
        };
        let claim_idle_ms = self.cfg.claim_idle.as_millis() as u64;
        // Claim checks run a few times per idle period, so a dead consumer's
        // entries wait at most about 1.5 x claim_idle.
        let claim_every = (self.cfg.claim_idle / 2).max(Duration::from_millis(50));
        let mut last_claim: Option<Instant> = None;
        let mut last_watermark = Instant::now();
        // Batches committed since the watermark was last raised. When the
        // stream goes quiet they are covered at the next empty read; without
        // this an idle index leaves its last batches out of the watermark, so
        // it cannot say its database is complete and a restart replays them.
        let mut watermark_behind = true;
        let mut conn: Option<MultiplexedConnection> = None;
        let mut reader: Option<EntryReader> = None;
        let mut backoff = MIN_BACKOFF;
        // A committed batch whose acknowledgement failed (Redis went away):
        // acknowledged first once Redis is back, before reading anything new.
        let mut unfinished: Option<Prepared> = None;
        let mut resweeps: Vec<Resweep> = Vec::new();
        let mut need_group = false;
        // Until its first empty read, a worker finishes what a predecessor of
        // the same name left pending before it reads anything new.
        let mut own_pending = true;
        while !self.stop.is_cancelled() {
            let step = async {
                let redis = match conn.as_mut() {
                    Some(redis) => redis,
                    None => conn.insert(connect(&self.redis).await?),
                };
                if reader.as_ref().is_some_and(|r| !r.is_usable()) {
                    reader = None;
                }
                let entries = match reader.as_mut() {
                    Some(entries) => entries,
                    None => reader.insert(EntryReader::connect(&self.target).await?),
                };
                if need_group {
                    stream.ensure_group(redis).await?;
                    need_group = false;
                }
                if let Some(prepared) = unfinished.take() {
                    self.acknowledge(&stream, redis, prepared, &mut unfinished, &mut resweeps)
                        .await?;
                    watermark_behind = true;
                }
                let mut batch = Vec::new();
                if own_pending {
                    batch = stream
                        .read_own_pending(entries, &self.name, self.cfg.batch_size)
                        .await?;
                    own_pending = !batch.is_empty();
                }
                if batch.is_empty() && last_claim.is_none_or(|at| at.elapsed() >= claim_every) {
                    let held: HashSet<&str> = resweeps
                        .iter()
                        .flat_map(|r| r.entries.iter().map(|(entry, _)| entry.id.as_str()))
                        .collect();
                    batch = self
                        .claim_stale(&stream, redis, claim_idle_ms, &held)
                        .await?;
                    last_claim = Some(Instant::now());
                }
                let mine_waiting = self.shards.has_waiting(self.index);
                // What this worker hands over waits in memory until its owner
                // takes it: while an owner has a batch of them waiting, read
                // nothing new.
                let owners_behind =
                    self.shards.most_waiting_for_others(self.index) >= self.cfg.batch_size;
                if batch.is_empty() && owners_behind && !mine_waiting {
                    tokio::select! {
                        _ = tokio::time::sleep(OWNERS_BEHIND_PAUSE) => {}
                        _ = self.stop.cancelled() => {}
                    }
                    return Ok(false);
                }
                if batch.is_empty() && !owners_behind {
                    // Events handed over by other workers are due now; only
                    // look for company.
                    let block_ms = if mine_waiting {
                        1
                    } else if self.cfg.exit_when_drained {
                        // The stream may be delivered to the end while other
                        // workers still apply their last batches: look again
                        // soon, so the process exits when they are done.
                        self.cfg.block.min(DRAIN_CHECK_EVERY).as_millis().max(1) as u64
                    } else {
                        self.cfg.block.as_millis().max(1) as u64
                    };
                    batch = tokio::select! {
                        read = stream.read_new(entries, &self.name, self.cfg.batch_size, block_ms) => read?,
                        _ = self.stop.cancelled() => return Ok(false),
                    };
                }
                if batch.is_empty() && !self.shards.has_waiting(self.index) {
                    if let Some(prepared) = self.resweep_alone(&mut resweeps).await? {
                        self.acknowledge(&stream, redis, prepared, &mut unfinished, &mut resweeps)
                            .await?;
                        // The deletions' entries held the watermark below
                        // them; nothing else may come to raise it.
                        watermark_behind = true;
                    }
                    if self.cfg.exit_when_drained
                        && stream.drained(redis).await?
                        && self.shards.close(self.index)
                    {
                        self.update_watermark(&stream, redis).await?;
                        return Ok(true);
                    }
                    if watermark_behind {
                        self.update_watermark(&stream, redis).await?;
                        watermark_behind = false;
                        last_watermark = Instant::now();
                    }
                    return Ok(false);
                }
                let prepared = self.process(batch, &mut resweeps).await?;
                let Some(prepared) = prepared else {
                    return Ok(true);
                };
                self.acknowledge(&stream, redis, prepared, &mut unfinished, &mut resweeps)
                    .await?;
                if last_watermark.elapsed() >= WATERMARK_EVERY {
                    self.update_watermark(&stream, redis).await?;
                    last_watermark = Instant::now();
                    watermark_behind = false;
                } else {
                    watermark_behind = true;
                }
                Ok::<bool, IndexError>(false)
            };
            match step.await {
                Ok(true) => break,
                Ok(false) => backoff = MIN_BACKOFF,
                Err(err) if err.is_transient() => {
                    if matches!(
                        err,
                        IndexError::Redis { .. } | IndexError::RedisReply { .. }
                    ) {
                        conn = None;
                        reader = None;
                    }
                    warn!(worker = %self.name, error = %err, retry_in = ?backoff, "redis or postgres unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(err) if err.is_missing_group() => {
                    // Redis lost the stream and its group (it keeps nothing on
                    // disk): recreate the group; ingest refills the stream from
                    // the watermark, and an unacknowledged batch is gone anyway.
                    warn!(worker = %self.name, error = %err, "consumer group missing; recreating it");
                    unfinished = None;
                    need_group = true;
                }
                Err(err) => return Err(err),
            }
        }
        if !resweeps.is_empty() {
            self.resweep_at_stop(&stream, conn, resweeps).await;
        }
        Ok(())
    }

    /// Acknowledges a committed batch; its deletions still waiting for their
    /// second sweep join `resweeps`. When Redis fails, the batch is kept in
    /// `unfinished`, to be acknowledged first once Redis is back.
    async fn acknowledge(
        &self,
        stream: &Stream<'_>,
        redis: &mut MultiplexedConnection,
        mut prepared: Prepared,
        unfinished: &mut Option<Prepared>,
        resweeps: &mut Vec<Resweep>,
    ) -> Result<(), IndexError> {
        if let Err(err) = self.finish(stream, redis, &prepared).await {
            *unfinished = Some(prepared);
            return Err(err);
        }
        resweeps.append(&mut prepared.waiting);
        Ok(())
    }

    /// Takes the deletions whose waited-for transactions have all ended (or
    /// that waited longer than any batch lasts).
    async fn take_ready(
        &self,
        resweeps: &mut Vec<Resweep>,
    ) -> Result<Vec<(RawEntry, Event)>, IndexError> {
        let mut ready = Vec::new();
        if resweeps.is_empty() {
            return Ok(ready);
        }
        let client = self
            .pool
            .get()
            .await
            .map_err(IndexError::pool("getting a connection"))?;
        // Decided for all before any is taken, so that a failed check
        // leaves every deletion where it was.
        let mut is_ready = Vec::with_capacity(resweeps.len());
        for resweep in resweeps.iter() {
            let overdue = resweep.since.elapsed() > CONCURRENT_WAIT_LIMIT;
            if overdue {
                warn!(
                    worker = %self.name,
                    "transactions running since an account deletion are still running; sweeping again without them"
                );
            }
            is_ready.push(overdue || running_count(&client, &resweep.running).await? == 0);
        }
        for (resweep, is_ready) in std::mem::take(resweeps).into_iter().zip(is_ready) {
            if is_ready {
                ready.extend(resweep.entries);
            } else {
                resweeps.push(resweep);
            }
        }
        Ok(ready)
    }

    /// The second sweep of the deletions that are ready, in a transaction
    /// of its own, when no batch comes to carry it.
    async fn resweep_alone(
        &self,
        resweeps: &mut Vec<Resweep>,
    ) -> Result<Option<Prepared>, IndexError> {
        let ready = self.take_ready(resweeps).await?;
        if ready.is_empty() {
            return Ok(None);
        }
        let events: Vec<&Event> = ready.iter().map(|(_, event)| event).collect();
        match self.apply_isolating(&[], &events).await {
            Ok(isolated) => {
                let mut prepared = Prepared::default();
                prepared.settle_resweeps(ready, isolated.resweep_failed);
                Ok(Some(prepared))
            }
            Err(err) => {
                resweeps.push(Resweep::ready(ready));
                Err(err)
            }
        }
    }

    /// A stopping worker finishes its deletions' second sweeps if the
    /// transactions they wait for end soon; otherwise their entries stay
    /// pending and another consumer applies them again.
    async fn resweep_at_stop(
        &self,
        stream: &Stream<'_>,
        conn: Option<MultiplexedConnection>,
        mut resweeps: Vec<Resweep>,
    ) {
        let finished = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(IndexError::pool("getting a connection"))?;
            for resweep in &mut resweeps {
                if wait_for_transactions(&client, &resweep.running, RESWEEP_AT_STOP).await? {
                    resweep.running.clear();
                }
            }
            drop(client);
            let mut redis = match conn {
                Some(redis) => redis,
                None => connect(&self.redis).await?,
            };
            while let Some(prepared) = self.resweep_alone(&mut resweeps).await? {
                self.finish(stream, &mut redis, &prepared).await?;
            }
            Ok::<usize, IndexError>(resweeps.iter().map(|r| r.entries.len()).sum())
        };
        match finished.await {
            Ok(0) => {}
            Ok(left) => {
                warn!(worker = %self.name, entries = left, "account deletions still waiting at stop are left pending for another consumer")
            }
            Err(err) => {
                warn!(worker = %self.name, error = %err, "account deletions still waiting at stop are left pending for another consumer")
            }
        }
    }

    /// Takes over entries abandoned by other consumers; those delivered too
    /// often come back marked for the dead-letter stream. `held` are this
    /// worker's own deletions waiting for their second sweep: idle in the
    /// group, but not abandoned.
    async fn claim_stale(
        &self,
        stream: &Stream<'_>,
        redis: &mut MultiplexedConnection,
        claim_idle_ms: u64,
        held: &HashSet<&str>,
    ) -> Result<Vec<RawEntry>, IndexError> {
        let mut stale = stream
            .stale_pending(redis, claim_idle_ms, self.cfg.batch_size)
            .await?;
        stale.retain(|(id, _)| !held.contains(id.as_str()));
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = stale.iter().map(|(id, _)| id.clone()).collect();
        let mut entries = stream.claim(redis, &self.name, claim_idle_ms, &ids).await?;
        self.totals
            .claimed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        metrics::counter!("skyhose_index_claimed_total").increment(entries.len() as u64);
        for entry in &mut entries {
            let previous = stale
                .iter()
                .find(|(id, _)| *id == entry.id)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            // This claim is one more delivery.
            if previous + 1 > self.cfg.max_deliveries as i64 {
                entry
                    .fields
                    .push((TOO_MANY_DELIVERIES.into(), (previous + 1).to_string()));
            }
        }
        Ok(entries)
    }

    /// Validates a batch, keeps the events of this worker's repos with
    /// those other workers handed over (`shards`), hands over the rest and
    /// applies what it kept, with the second sweep of the deletions in
    /// `resweeps` that are ready; `None` when shutdown interrupted it
    /// (nothing acknowledged, the entries stay pending for a later claim).
    async fn process(
        &self,
        batch: Vec<RawEntry>,
        resweeps: &mut Vec<Resweep>,
    ) -> Result<Option<Prepared>, IndexError> {
        let mut prepared = Prepared {
            good: self.shards.take(self.index),
            ..Prepared::default()
        };
        let mut others: Vec<Vec<(RawEntry, Event)>> = vec![Vec::new(); self.cfg.workers];
        for mut entry in batch {
            if let Some(pos) = entry
                .fields
                .iter()
                .position(|(k, _)| k == TOO_MANY_DELIVERIES)
            {
                let (_, count) = entry.fields.remove(pos);
                let reason = format!(
                    "entry {} delivered {count} times without being acknowledged",
                    entry.id
                );
                prepared.dead.push((entry, reason));
                continue;
            }
            match parse_entry(&entry) {
                Ok(event) => match self.shards.owner(&event) {
                    Some(owner) if owner != self.index && owner < others.len() => {
                        others[owner].push((entry, event));
                    }
                    _ => prepared.good.push((entry, event)),
                },
                Err(err) => prepared.dead.push((entry, err.to_string())),
            }
        }
        for (owner, events) in others.into_iter().enumerate() {
            let refused = self.shards.hand_over(owner, events);
            prepared.good.extend(refused);
        }
        // A failed check leaves the deletions waiting for the next batch;
        // this one goes ahead.
        let ready = match self.take_ready(resweeps).await {
            Ok(ready) => ready,
            Err(err) if err.is_transient() => {
                warn!(worker = %self.name, error = %err, "checking on account deletions failed; checking again with the next batch");
                Vec::new()
            }
            Err(err) => return Err(err),
        };
        let mut backoff = MIN_BACKOFF;
        loop {
            let events: Vec<(usize, &Event)> = prepared
                .good
                .iter()
                .enumerate()
                .map(|(i, (_, e))| (i, e))
                .collect();
            let ready_events: Vec<&Event> = ready.iter().map(|(_, event)| event).collect();
            let outcome = self.apply_isolating(&events, &ready_events).await;
            match outcome {
                Ok(isolated) => {
                    let mut slots: Vec<Option<(RawEntry, Event)>> =
                        prepared.good.drain(..).map(Some).collect();
                    for (index, reason) in isolated.failed {
                        if let Some((entry, _)) = slots[index].take() {
                            prepared.dead.push((entry, reason));
                        }
                    }
                    for (indices, running) in isolated.waiting {
                        let entries = indices.iter().filter_map(|&i| slots[i].take()).collect();
                        prepared
                            .waiting
                            .push(Resweep::waiting_for(entries, running));
                    }
                    prepared.good = slots.into_iter().flatten().collect();
                    prepared.settle_resweeps(ready, isolated.resweep_failed);
                    return Ok(Some(prepared));
                }
                Err(err) if err.is_transient() => {
                    self.totals.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("skyhose_index_retries_total").increment(1);
                    warn!(worker = %self.name, error = %err, "batch transaction failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.cancelled() => {
                            resweeps.push(Resweep::ready(ready));
                            return Ok(None);
                        }
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(err) => {
                    resweeps.push(Resweep::ready(ready));
                    return Err(err);
                }
            }
        }
    }

    /// Applies `events` with the second sweep of `resweeps`; when PostgreSQL
    /// rejects the batch for its data, sweeps alone, then splits the batch
    /// until the offending entries are alone and returns them with reasons.
    async fn apply_isolating(
        &self,
        events: &[(usize, &Event)],
        resweeps: &[&Event],
    ) -> Result<Isolated, IndexError> {
        let mut isolated = Isolated::default();
        let mut resweeps = resweeps;
        let mut pending: Vec<&[(usize, &Event)]> = vec![events];
        while !pending.is_empty() || !resweeps.is_empty() {
            let part = pending.pop().unwrap_or_default();
            if part.is_empty() && resweeps.is_empty() {
                continue;
            }
            let mut client = self
                .pool
                .get()
                .await
                .map_err(IndexError::pool("getting a connection"))?;
            let only: Vec<&Event> = part.iter().map(|(_, e)| *e).collect();
            let started = Instant::now();
            match apply_batch(&mut client, &only, resweeps, &self.known).await {
                Ok(applied) => {
                    metrics::histogram!("skyhose_index_batch_seconds")
                        .record(started.elapsed().as_secs_f64());
                    resweeps = &[];
                    if let Some(running) = applied.running_at_deletion {
                        let deletions = part
                            .iter()
                            .filter(|(_, event)| is_account_deletion(event))
                            .map(|(index, _)| *index)
                            .collect();
                        isolated.waiting.push((deletions, running));
                    }
                }
                Err(err) if err.is_transient() => return Err(err),
                // Not caused by the entries' data (a schema or SQL problem):
                // dead-lettering would discard good entries, so stop instead.
                Err(err) if !err.is_data_error() => return Err(err),
                Err(err) if !resweeps.is_empty() => {
                    // Whether the sweeps were the cause is told by applying
                    // them alone; the part is tried again without them.
                    if !part.is_empty() {
                        pending.push(part);
                        match apply_batch(&mut client, &[], resweeps, &self.known).await {
                            Ok(_) => {}
                            Err(err) if err.is_transient() || !err.is_data_error() => {
                                return Err(err)
                            }
                            Err(err) => isolated.resweep_failed = Some(err.to_string()),
                        }
                    } else {
                        isolated.resweep_failed = Some(err.to_string());
                    }
                    resweeps = &[];
                }
                Err(err) if part.len() == 1 => {
                    isolated.failed.push((part[0].0, err.to_string()));
                }
                Err(err) => {
                    warn!(worker = %self.name, error = %err, size = part.len(), "batch rejected; splitting it");
                    let (left, right) = part.split_at(part.len() / 2);
                    pending.push(right);
                    pending.push(left);
                }
            }
        }
        Ok(isolated)
    }

    async fn finish(
        &self,
        stream: &Stream<'_>,
        redis: &mut MultiplexedConnection,
        prepared: &Prepared,
    ) -> Result<(), IndexError> {
        for (entry, reason) in &prepared.dead {
            warn!(entry = %entry.id, %reason, "dead-lettering entry");
        }
        // Applied and dead-lettered entries alike are done with; events
        // handed to another worker are that worker's to acknowledge.
        let ids: Vec<String> = prepared
            .good
            .iter()
            .map(|(entry, _)| entry)
            .chain(prepared.dead.iter().map(|(entry, _)| entry))
            .map(|entry| entry.id.clone())
            .collect();
        stream
            .finish(redis, &self.cfg.dead_letter_key, &prepared.dead, &ids)
            .await?;
        let applied = prepared.good.len() as u64;
        let dead = prepared.dead.len() as u64;
        self.totals.events.fetch_add(applied, Ordering::Relaxed);
        self.totals.dead.fetch_add(dead, Ordering::Relaxed);
        self.totals.batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("skyhose_index_events_total").increment(applied);
        metrics::counter!("skyhose_index_dead_letters_total").increment(dead);
        metrics::counter!("skyhose_index_batches_total").increment(1);
        Ok(())
    }

    async fn update_watermark(
        &self,
        stream: &Stream<'_>,
        redis: &mut MultiplexedConnection,
    ) -> Result<(), IndexError> {
        if let Some(seq) = stream.safe_seq(redis).await? {
            raise_watermark(&self.pool, seq).await?;
            metrics::gauge!("skyhose_index_watermark_seq").set(seq as f64);
        }
        Ok(())
    }
}

/// Marker field added in memory (never written) to a claimed entry that has
/// been delivered more than `max_deliveries` times.
const TOO_MANY_DELIVERIES: &str = "\0deliveries";
