//! One scenario's world: its own database, its own Redis keys, a simulated
//! relay with a known ground truth, the stream audit, and the pipeline
//! processes. `finish` lets the pipeline catch up, stops it and measures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use skyhose_index::CancellationToken;
use skyhose_sim::relay::{self, Faults, RelayConfig, RelayHandle};
use skyhose_sim::{SimConfig, SplitMix64};

use super::audit::{Audit, Tally};
use super::procs::{log_path, Proc, RssMonitor};
use super::report::Row;
use super::truth;

/// What every scenario shares: where the services are and how long to wait.
pub struct Ctx {
    pub exe: PathBuf,
    pub redis_url: String,
    /// `postgres://user@host:port`, without a database.
    pub postgres: String,
    pub work_dir: PathBuf,
    pub keep: bool,
    /// Longest wait for the pipeline to catch up after the last fault.
    pub catch_up: Duration,
}

impl Ctx {
    pub fn tag(&self, scenario: &str) -> String {
        format!(
            "faults_{}_{}",
            std::process::id(),
            scenario.replace('-', "_")
        )
    }
}

/// How a scenario's relay and services are set up.
pub struct Setup {
    pub scenario: &'static str,
    pub sim: SimConfig,
    pub total: u64,
    pub rate: Option<f64>,
    pub window: usize,
    pub relay_faults: Faults,
    /// Redis of this scenario (a private one for restarts).
    pub redis_url: String,
    /// Server URL without a database (a private one for restarts).
    pub postgres: String,
}

impl Setup {
    pub fn new(ctx: &Ctx, scenario: &'static str, seed: u64, total: u64, rate: f64) -> Setup {
        Setup {
            scenario,
            sim: SimConfig {
                seed,
                accounts: 300,
                ..SimConfig::default()
            },
            total,
            rate: Some(rate),
            window: total as usize + 16,
            relay_faults: Faults::default(),
            redis_url: ctx.redis_url.clone(),
            postgres: ctx.postgres.clone(),
        }
    }
}

/// The scenario's Redis keys, all under one prefix.
pub struct Keys {
    pub stream: String,
    pub cursor: String,
    pub status: String,
    pub dead: String,
}

/// What the end of a scenario must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every event indexed once; the database equals the ground truth.
    Exact,
    /// The relay no longer had the events after `cursor` when ingest came
    /// back (OutdatedCursor): exactly one run of seqs after it is missing,
    /// nothing else, and the database cannot equal the truth.
    RelayGapAfter { cursor: i64 },
}

/// When the last fault ended and how far the relay was then.
#[derive(Debug, Clone, Copy)]
pub struct FaultEnd {
    pub at: Instant,
    pub head: i64,
}

pub struct Stage {
    pub scenario: &'static str,
    pub sim: SimConfig,
    pub total: u64,
    pub redis_url: String,
    pub database_url: String,
    pub keys: Keys,
    pub relay: RelayHandle,
    pub rss: RssMonitor,
    pub consumer: String,
    audit: Audit,
    rss_stop: CancellationToken,
    exe: PathBuf,
    log_dir: PathBuf,
    spawned: usize,
    keep: bool,
    catch_up: Duration,
}

impl Stage {
    /// Creates the database (schema applied, watermark 0 so that a Redis
    /// without data makes ingest read the relay from its first event), the
    /// audit group and the relay.
    pub async fn start(ctx: &Ctx, setup: Setup) -> anyhow::Result<Stage> {
        let tag = ctx.tag(setup.scenario);
        let database_url = format!("{}/{tag}", setup.postgres.trim_end_matches('/'));
        let _ = skyhose_index::drop_database(&database_url).await;
        skyhose_index::ensure_database(&database_url)
            .await
            .with_context(|| format!("creating the database {tag}"))?;
        let pool = skyhose_index::connect_pool(&database_url, 1)?;
        skyhose_index::migrate(&pool)
            .await
            .with_context(|| format!("migrating {tag}"))?;
        pool.get()
            .await
            .context("connecting to the scenario database")?
            .execute(
                "INSERT INTO index_watermark (id, seq) VALUES (true, 0) ON CONFLICT DO NOTHING",
                &[],
            )
            .await
            .context("seeding the index watermark")?;
        drop(pool);

        let prefix = format!("faults:{tag}");
        let keys = Keys {
            stream: format!("{prefix}:events"),
            cursor: format!("{prefix}:cursor"),
            status: format!("{prefix}:status"),
            dead: format!("{prefix}:dead"),
        };
        delete_keys(&setup.redis_url, &keys).await;
        let audit = Audit::start(&setup.redis_url, &keys.stream, setup.total).await?;
        let relay = relay::start(RelayConfig {
            sim: setup.sim.clone(),
            total: Some(setup.total),
            rate: setup.rate,
            window: setup.window,
            faults: setup.relay_faults,
            ..RelayConfig::default()
        })
        .await
        .context("starting the simulated relay")?;
        let log_dir = ctx.work_dir.join(setup.scenario);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let rss_stop = CancellationToken::new();
        Ok(Stage {
            scenario: setup.scenario,
            sim: setup.sim,
            total: setup.total,
            redis_url: setup.redis_url,
            database_url,
            consumer: format!("{tag}-index"),
            keys,
            relay,
            rss: RssMonitor::start(rss_stop.clone()),
            audit,
            rss_stop,
            exe: ctx.exe.clone(),
            log_dir,
            spawned: 0,
            keep: ctx.keep,
            catch_up: ctx.catch_up,
        })
    }

    fn spawn(&mut self, label: &str, args: Vec<String>) -> anyhow::Result<Proc> {
        self.spawned += 1;
        let log = log_path(&self.log_dir, label, self.spawned);
        Proc::spawn(&self.exe, &args, label, &log, &self.rss)
    }

    /// `skyhose ingest` on this scenario's relay and keys; its fallback
    /// cursor is the index's watermark, read at start.
    pub fn spawn_ingest(&mut self, extra: &[&str]) -> anyhow::Result<Proc> {
        let mut args = strings(&["ingest", "--relay", &self.relay.url()]);
        args.extend(strings(&[
            "--redis",
            &self.redis_url,
            "--database-url",
            &self.database_url,
            "--stream-key",
            &self.keys.stream,
            "--cursor-key",
            &self.keys.cursor,
            "--status-key",
            &self.keys.status,
            "--batch-linger",
            "20ms",
        ]));
        // Reconnect delays short enough for a test, unless the scenario sets them.
        if !extra.contains(&"--backoff-cap") {
            args.extend(strings(&["--backoff-cap", "2s"]));
        }
        args.extend(strings(extra));
        self.spawn("ingest", args)
    }

    /// `skyhose index` under one consumer name, so a restarted process
    /// finishes what its killed predecessor left pending.
    pub fn spawn_index(&mut self) -> anyhow::Result<Proc> {
        let args = strings(&[
            "index",
            "--redis",
            &self.redis_url,
            "--database-url",
            &self.database_url,
            "--stream-key",
            &self.keys.stream,
            "--dead-letter-key",
            &self.keys.dead,
            "--consumer",
            &self.consumer,
            "--claim-idle",
            "2s",
            "--workers",
            "2",
        ]);
        self.spawn("index", args)
    }

    /// `skyhose run` (ingest, index and API in one process) on this relay.
    pub fn spawn_run(&mut self, api_port: u16, extra: &[&str]) -> anyhow::Result<Proc> {
        let data_dir = self.log_dir.join("data");
        let mut args = strings(&[
            "run",
            "--relay",
            &self.relay.url(),
            "--database-url",
            &self.database_url,
            "--redis",
            &self.redis_url,
            "--stream-key",
            &self.keys.stream,
            "--cursor-key",
            &self.keys.cursor,
            "--status-key",
            &self.keys.status,
            "--dead-letter-key",
            &self.keys.dead,
            "--listen",
            &format!("127.0.0.1:{api_port}"),
        ]);
        args.push("--data-dir".into());
        args.push(data_dir.display().to_string());
        args.extend(strings(extra));
        self.spawn("run", args)
    }

    /// The index's committed watermark, or `None` while PostgreSQL is away.
    pub async fn watermark(&self) -> Option<i64> {
        watermark(&self.database_url).await
    }

    /// Waits until the watermark reaches `seq`, at most `limit`.
    pub async fn wait_for_watermark(&self, seq: i64, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.watermark().await;
            if now.unwrap_or(-1) >= seq {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: the index watermark stayed at {now:?}, below {seq}, for {limit:?}",
                    self.scenario
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn fault_end(&self) -> FaultEnd {
        FaultEnd {
            at: Instant::now(),
            head: self.relay.head_seq(),
        }
    }

    /// Lets the pipeline catch up, stops it, and measures the scenario.
    pub async fn finish(
        self,
        procs: Vec<Proc>,
        faults: String,
        last_fault: FaultEnd,
        expect: Expect,
    ) -> anyhow::Result<Row> {
        let mut procs = procs;
        let mut problems = Vec::new();
        let recovery = self.catch_up(&mut procs, last_fault, &mut problems).await;
        for proc in procs {
            let label = proc.label().to_owned();
            match proc.terminate(Duration::from_secs(30)).await {
                Ok(status) if status.success() => {}
                Ok(status) => problems.push(format!("{label} exited with {status} on SIGTERM")),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        let peak_rss_kb = self.rss.peak_kb();
        self.rss_stop.cancel();
        let sent = self.relay.head_seq();
        let indexed = self.watermark().await.unwrap_or(0);
        let tally = self.audit.finish().await?;
        let dead = dead_letters(&self.redis_url, &self.keys.dead).await;
        if dead > 0 {
            problems.push(format!("{dead} entries were dead-lettered"));
        }
        let (lost, stream_problem) = losses(&tally, sent, indexed, expect);
        problems.extend(stream_problem);
        if tally.duplicates > 0 {
            problems.push(format!(
                "{} seqs were written twice to the stream (first: {:?})",
                tally.duplicates, tally.first_duplicate
            ));
        }
        if tally.strays > 0 {
            problems.push(format!(
                "{} stream entries had a seq outside 1..={sent}",
                tally.strays
            ));
        }
        let database = match expect {
            Expect::Exact => {
                let pool = skyhose_index::connect_pool(&self.database_url, 1)?;
                let snapshot = skyhose_index::snapshot(&pool)
                    .await
                    .context("reading the database snapshot")?;
                drop(pool);
                let truth = truth::after(&self.sim, sent.max(0) as u64).await?;
                let diff = truth::compare(&snapshot, &truth);
                if !diff.is_empty() {
                    problems.push(format!("the database differs from the truth: {diff}"));
                }
                diff.to_string()
            }
            Expect::RelayGapAfter { .. } => {
                "not comparable (events the relay no longer had)".to_owned()
            }
        };
        self.relay.shutdown().await;
        if !self.keep {
            delete_keys(&self.redis_url, &self.keys).await;
            let _ = skyhose_index::drop_database(&self.database_url).await;
        }
        Ok(Row {
            scenario: self.scenario,
            faults,
            sent: sent.max(0) as u64,
            indexed,
            lost,
            duplicated: tally.duplicates,
            replayed: tally.replayed,
            recovery: recovery.unwrap_or_default(),
            peak_rss_kb,
            database,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }

    /// Waits until the relay has sent everything and the index committed it
    /// and the audit read it; returns how long after `last_fault` the index
    /// had committed what the relay had sent by then.
    async fn catch_up(
        &self,
        procs: &mut [Proc],
        last_fault: FaultEnd,
        problems: &mut Vec<String>,
    ) -> Option<Duration> {
        let deadline = Instant::now() + self.catch_up;
        let mut recovery = None;
        loop {
            let watermark = self.watermark().await.unwrap_or(-1);
            if recovery.is_none() && watermark >= last_fault.head {
                recovery = Some(last_fault.at.elapsed());
            }
            let head = self.relay.head_seq();
            if head >= self.total as i64 && watermark >= head && self.audit.highest() >= head {
                return recovery;
            }
            for proc in procs.iter_mut() {
                if let Some(status) = proc.exited() {
                    problems.push(format!("{} exited on its own with {status}", proc.label()));
                    return recovery;
                }
            }
            if Instant::now() >= deadline {
                problems.push(format!(
                    "no catch-up within {:?}: relay head {head} of {}, watermark {watermark}, audit at {}",
                    self.catch_up,
                    self.total,
                    self.audit.highest()
                ));
                return recovery;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Events lost: never in the stream, or in it but never committed; and what
/// is wrong with that against `expect`.
fn losses(tally: &Tally, sent: i64, indexed: i64, expect: Expect) -> (u64, Option<String>) {
    let missing = tally.missing(sent);
    let never_in_stream: u64 = missing
        .iter()
        .map(|(a, b)| (b.min(&indexed) - a + 1).max(0) as u64)
        .sum();
    let uncommitted = (sent - indexed).max(0) as u64;
    let lost = never_in_stream + uncommitted;
    let problem = match expect {
        Expect::Exact if lost > 0 => Some(format!(
            "{lost} events lost: {uncommitted} not committed (watermark {indexed} of {sent}), \
             never in the stream: {}",
            ranges(&missing)
        )),
        Expect::Exact => None,
        Expect::RelayGapAfter { cursor } => match missing.as_slice() {
            [(first, _)] if *first == cursor + 1 && uncommitted == 0 => None,
            [] => Some(format!(
                "the relay was expected to have lost events after seq {cursor}, but none are missing"
            )),
            _ => Some(format!(
                "expected one gap right after seq {cursor} (the relay's), found: {}; {uncommitted} not committed",
                ranges(&missing)
            )),
        },
    };
    (lost, problem)
}

fn ranges(missing: &[(i64, i64)]) -> String {
    if missing.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = missing
        .iter()
        .take(5)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect();
    let more = missing.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more ranges", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub async fn watermark(database_url: &str) -> Option<i64> {
    let read = crate::cmd::ingest::read_watermark(database_url);
    tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .ok()?
        .ok()
        .flatten()
}

async fn redis_conn(redis_url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = skyhose_connect::redis_client(redis_url).ok()?;
    tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()
}

async fn dead_letters(redis_url: &str, key: &str) -> u64 {
    let Some(mut conn) = redis_conn(redis_url).await else {
        return 0;
    };
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap_or(0)
}

/// Removes every key of the scenario (its Redis data loss, or clean-up).
pub async fn delete_keys(redis_url: &str, keys: &Keys) {
    if let Some(mut conn) = redis_conn(redis_url).await {
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(&keys.stream)
            .arg(&keys.cursor)
            .arg(&keys.status)
            .arg(&keys.dead)
            .query_async(&mut conn)
            .await;
    }
}

pub use crate::services::free_port;

/// Fault timings: the simulator's deterministic generator, so `--seed`
/// repeats a run.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed ^ 0x9E37_79B9_7F4A_7C15))
    }

    /// A delay drawn uniformly from `lo..hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.0.next_u64() % (hi - lo).max(1))
    }
}
