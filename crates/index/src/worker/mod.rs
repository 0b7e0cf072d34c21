//! The consumer-group workers: read or claim a batch, apply it in one
//! transaction, dead-letter what cannot be applied, acknowledge after commit,
//! raise the watermark. Outages of Redis or PostgreSQL are waited out.
//!
//! `schedule` decides each step without I/O; a worker's `Session` performs
//! the steps (`batch` a batch's way from the stream to its acknowledgement,
//! `resweep` the account deletions waiting for their second sweep);
//! `background` runs the statistics refresh and the progress line beside
//! the workers.

mod background;
mod batch;
mod resweep;
mod schedule;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::apply::{KnownActors, DEFAULT_KNOWN_ACTORS};
use crate::error::IndexError;
use crate::shards::Shards;
use crate::snapshot::raise_watermark;
use crate::stream::{EntryReader, Stream};
use crate::IndexConfig;
use batch::Prepared;
use resweep::{held_ids, Resweep};
use schedule::{
    next_backoff, Failure, Machine, Recovery, Settings, Shares, Source, Step, MIN_BACKOFF,
};

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
    let statistics = tokio::spawn(background::refresh_statistics(pool.clone(), stop.clone()));
    let identity = cfg.identity.clone().map(|identity| {
        tokio::spawn(crate::identity::run(
            pool.clone(),
            Arc::new(skyhose_identity::Resolver::new(identity)),
            crate::identity::IdentityTaskOptions::default(),
            stop.clone(),
        ))
    });
    let reporter = tokio::spawn(background::report_progress(
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
                backoff = next_backoff(backoff);
            }
            Err(err) => return Err(err),
        }
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

/// A running worker's connections and the work it holds between rounds.
struct Session<'w> {
    worker: &'w Worker,
    stream: Stream<'w>,
    machine: Machine,
    conn: Option<MultiplexedConnection>,
    reader: Option<EntryReader>,
    held: Held,
}

/// What a worker holds between rounds besides its connections.
#[derive(Default)]
struct Held {
    /// A committed batch whose acknowledgement failed (Redis went away):
    /// acknowledged first once Redis is back, before reading anything new.
    unfinished: Option<Prepared>,
    resweeps: Vec<Resweep>,
}

/// How a round ended.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    Continue,
    /// The stream is drained (with `exit_when_drained`) or shutdown
    /// interrupted a batch.
    Done,
}

impl Worker {
    async fn run(self) -> Result<(), IndexError> {
        let settings = Settings {
            claim_idle: self.cfg.claim_idle,
            block: self.cfg.block,
            exit_when_drained: self.cfg.exit_when_drained,
        };
        let mut session = Session {
            worker: &self,
            stream: Stream {
                key: &self.cfg.stream_key,
                group: &self.cfg.group,
            },
            machine: Machine::new(settings, Instant::now()),
            conn: None,
            reader: None,
            held: Held::default(),
        };
        while !self.stop.is_cancelled() {
            let err = match session.round().await {
                Ok(Round::Continue) => {
                    session.machine.round_done();
                    continue;
                }
                Ok(Round::Done) => break,
                Err(err) => err,
            };
            match session.machine.failed(Failure::of(&err)) {
                Recovery::WaitOut { delay, reconnect } => {
                    if reconnect {
                        session.conn = None;
                        session.reader = None;
                    }
                    warn!(worker = %self.name, error = %err, retry_in = ?delay, "redis or postgres unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.cancelled() => break,
                    }
                }
                Recovery::RecreateGroup => {
                    warn!(worker = %self.name, error = %err, "consumer group missing; recreating it");
                    session.held.unfinished = None;
                }
                Recovery::Stop => return Err(err),
            }
        }
        let Session {
            stream, conn, held, ..
        } = session;
        let resweeps = held.resweeps;
        if !resweeps.is_empty() {
            self.resweep_at_stop(&stream, conn, resweeps).await;
        }
        Ok(())
    }

    /// What this worker sees of the others' hand-overs.
    fn shares(&self) -> Shares {
        Shares {
            mine_waiting: self.shards.has_waiting(self.index),
            owners_behind: self.shards.most_waiting_for_others(self.index) >= self.cfg.batch_size,
        }
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

impl Session<'_> {
    /// One round: connections, the batch left unfinished, then the steps
    /// `schedule` chooses until one ends the round.
    async fn round(&mut self) -> Result<Round, IndexError> {
        let worker = self.worker;
        let stream = &self.stream;
        let redis = match self.conn.as_mut() {
            Some(redis) => redis,
            None => self.conn.insert(connect(&worker.redis).await?),
        };
        if self.reader.as_ref().is_some_and(|r| !r.is_usable()) {
            self.reader = None;
        }
        let entries = match self.reader.as_mut() {
            Some(entries) => entries,
            None => self
                .reader
                .insert(EntryReader::connect(&worker.target).await?),
        };
        if self.machine.group_needed() {
            stream.ensure_group(redis).await?;
            self.machine.group_recreated();
        }
        if let Some(prepared) = self.held.unfinished.take() {
            worker
                .acknowledge(stream, redis, prepared, &mut self.held)
                .await?;
            self.machine.acknowledged_alone();
        }
        let cfg = &worker.cfg;
        let mut batch = Vec::new();
        let mut step = self.machine.begin(Instant::now(), worker.shares());
        loop {
            match step {
                Step::Read(source) => {
                    batch = match source {
                        Source::OwnPending => {
                            stream
                                .read_own_pending(entries, &worker.name, cfg.batch_size)
                                .await?
                        }
                        Source::Stale => {
                            let held = held_ids(&self.held.resweeps);
                            let claim_idle_ms = cfg.claim_idle.as_millis() as u64;
                            worker
                                .claim_stale(stream, redis, claim_idle_ms, &held)
                                .await?
                        }
                        Source::New { block_ms } => tokio::select! {
                            read = stream.read_new(entries, &worker.name, cfg.batch_size, block_ms) => read?,
                            _ = worker.stop.cancelled() => return Ok(Round::Continue),
                        },
                    };
                    step = self.machine.after_read(
                        source,
                        batch.len(),
                        Instant::now(),
                        worker.shares(),
                    );
                }
                Step::PauseForOwners => {
                    tokio::select! {
                        _ = tokio::time::sleep(OWNERS_BEHIND_PAUSE) => {}
                        _ = worker.stop.cancelled() => {}
                    }
                    return Ok(Round::Continue);
                }
                Step::Apply => {
                    let Some(prepared) = worker.process(batch, &mut self.held.resweeps).await?
                    else {
                        return Ok(Round::Done);
                    };
                    worker
                        .acknowledge(stream, redis, prepared, &mut self.held)
                        .await?;
                    if self.machine.watermark_due_after_batch(Instant::now()) {
                        worker.update_watermark(stream, redis).await?;
                        self.machine.watermark_raised(Instant::now());
                    }
                    return Ok(Round::Continue);
                }
                Step::Idle => {
                    if let Some(prepared) = worker.resweep_alone(&mut self.held.resweeps).await? {
                        worker
                            .acknowledge(stream, redis, prepared, &mut self.held)
                            .await?;
                        // The deletions' entries held the watermark below
                        // them; nothing else may come to raise it.
                        self.machine.acknowledged_alone();
                    }
                    if cfg.exit_when_drained
                        && stream.drained(redis).await?
                        && worker.shards.close(worker.index)
                    {
                        worker.update_watermark(stream, redis).await?;
                        return Ok(Round::Done);
                    }
                    if self.machine.watermark_due_when_idle() {
                        worker.update_watermark(stream, redis).await?;
                        self.machine.watermark_raised(Instant::now());
                    }
                    return Ok(Round::Continue);
                }
            }
        }
    }
}
