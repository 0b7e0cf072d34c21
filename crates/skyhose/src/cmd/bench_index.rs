//! `skyhose bench index`: a stream pre-filled with simulated events, indexed by
//! `skyhose index` child processes into fresh databases, with 1, 2 and 4 worker
//! tasks and a one-event-per-transaction baseline. Each run reads the same stream
//! through its own consumer group.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use skyhose_index::RowExt;
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_sim::{Network, SimConfig};

use super::bench::{sample, Disk, MachineCpu};

#[derive(Args, Debug)]
pub struct BenchIndexArgs {
    /// Simulated events in the stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Worker-task counts to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,
    /// Events indexed by the one-event-per-transaction baseline (0 skips it);
    /// a prefix of the stream, since the baseline is slow.
    #[arg(long, default_value_t = 20_000)]
    pub baseline_events: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, default_value_t = 20_000)]
    pub accounts: usize,
    #[arg(long, default_value_t = skyhose_index::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    #[arg(
        long = "redis",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = crate::config::check::redis_url
    )]
    pub redis_url: String,
    /// Server URL; each run creates and drops its own database there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432", value_parser = crate::config::check::postgres_url)]
    pub postgres: String,
    /// Start a private PostgreSQL cluster in this directory (created when
    /// missing), with the settings `skyhose run` gives the cluster it starts
    /// (docs/deploy.md), on a free loopback port, and measure against it
    /// instead of `--postgres`; it is stopped afterwards.
    #[arg(long, value_name = "DIR")]
    pub private_postgres: Option<std::path::PathBuf>,
    /// Keep the benchmark's stream and databases afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Extra arguments for the `skyhose index` child of the batched runs
    /// (e.g. "--batch-size=3000" beside the default for an A/B run).
    #[arg(long = "index-arg", allow_hyphen_values = true)]
    pub index_args: Vec<String>,
}

/// One timed `skyhose index` child.
struct Run<'a> {
    label: String,
    stream: &'a str,
    db: String,
    workers: usize,
    batch_size: usize,
    events: u64,
    index_args: Vec<String>,
}

struct Outcome {
    label: String,
    events: u64,
    elapsed: Duration,
    peak_rss_kb: u64,
    cpu: Duration,
    /// CPU of the PostgreSQL backends serving the run; `None` when the
    /// server is not on this machine (its processes are not in /proc).
    postgres_cpu: Option<Duration>,
    /// The whole machine's CPU during the run.
    machine: Option<MachineCpu>,
    /// The database's size once the run is over; `None` for the baseline
    /// (a prefix of the stream, whose live records are not counted).
    disk: Option<Disk>,
}

/// What the stream holds, per the simulated network's ground truth.
struct Filled {
    entries: u64,
    accounts: u64,
    /// Live records once every event is applied, in all and per collection.
    live_records: u64,
    live_by_collection: HashMap<String, u64>,
}

impl Filled {
    fn live(&self, collection: &str) -> u64 {
        self.live_by_collection
            .get(collection)
            .copied()
            .unwrap_or(0)
    }
}

pub async fn index(mut args: BenchIndexArgs) -> anyhow::Result<()> {
    let private = match &args.private_postgres {
        Some(dir) => {
            let port = crate::services::free_port()?;
            let private = crate::services::ensure_postgres("127.0.0.1", port, dir)?
                .context("a private PostgreSQL was asked for, but one already answers")?;
            args.postgres = format!("postgres://postgres@127.0.0.1:{port}");
            println!(
                "private PostgreSQL on port {port} ({})",
                crate::services::indexing_settings()
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Some(private)
        }
        None => None,
    };
    let result = measure(&args).await;
    if let Some(private) = private {
        private.stop();
    }
    result
}

async fn measure(args: &BenchIndexArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tag = format!("bench_index_{}", std::process::id());
    let stream = format!("{tag}:events");
    let baseline_stream = format!("{tag}:baseline");
    let client = skyhose_connect::redis_client(&args.redis_url).context("--redis")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to {}", args.redis_url))?;

    println!("filling {stream} with {} simulated events ...", args.events);
    let filled = fill(&mut conn, args, &stream, &baseline_stream).await?;
    println!(
        "stream ready: {} entries; afterwards {} live records of {} accounts",
        filled.entries, filled.live_records, filled.accounts
    );

    let mut outcomes = Vec::new();
    for &workers in &args.workers {
        let run = Run {
            label: format!("{workers} worker(s), batch {}", args.batch_size),
            stream: &stream,
            db: format!("{tag}_w{workers}"),
            workers,
            batch_size: args.batch_size,
            events: filled.entries,
            index_args: args.index_args.clone(),
        };
        outcomes.push(run_child(args, run).await?);
    }
    if args.baseline_events > 0 {
        // The naive indexer: one event per transaction.
        let run = Run {
            label: "baseline: 1 event per transaction".to_owned(),
            stream: &baseline_stream,
            db: format!("{tag}_baseline"),
            workers: 1,
            batch_size: 1,
            events: args.baseline_events.min(filled.entries),
            index_args: Vec::new(),
        };
        outcomes.push(run_child(args, run).await?);
    }

    println!();
    println!(
        "index benchmark: {} simulated events, {cores} cores (PostgreSQL and Redis on the same machine)",
        filled.entries
    );
    println!(
        "{:<40} {:>12} {:>10} {:>12} {:>10} {:>14} {:>14} {:>12} {:>8}",
        "run",
        "events/s",
        "seconds",
        "peak RSS MB",
        "CPU s",
        "index µs/ev",
        "postgres µs/ev",
        "other µs/ev",
        "idle %"
    );
    for o in &outcomes {
        let per_event = |cpu: Duration| cpu.as_secs_f64() * 1e6 / o.events.max(1) as f64;
        // What the indexer and its backends did not use: Redis, PostgreSQL's
        // background processes (WAL writer, autovacuum), the kernel, anything else.
        let other = o
            .machine
            .zip(o.postgres_cpu)
            .map(|(m, pg)| m.busy.saturating_sub(o.cpu + pg));
        let idle = o
            .machine
            .map(|m| 100.0 * m.idle.as_secs_f64() / (m.busy + m.idle).as_secs_f64().max(1e-9));
        let or_dash = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        println!(
            "{:<40} {:>12.0} {:>10.1} {:>12.1} {:>10.1} {:>14.1} {:>14} {:>12} {:>8}",
            o.label,
            o.events as f64 / o.elapsed.as_secs_f64().max(1e-9),
            o.elapsed.as_secs_f64(),
            o.peak_rss_kb as f64 / 1024.0,
            o.cpu.as_secs_f64(),
            per_event(o.cpu),
            or_dash(o.postgres_cpu.map(per_event)),
            or_dash(other.map(per_event)),
            or_dash(idle),
        );
    }
    println!(
        "(CPU per event: the indexer process, the PostgreSQL backends serving it, and the rest \
         of the machine's busy time; on {cores} cores the three together bound events/s at \
         about {cores} s / their sum; idle: the share of the cores' time nobody used)"
    );
    print_disk(&outcomes, &filled);
    if !args.keep {
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(&stream)
            .arg(&baseline_stream)
            .arg(format!("{tag}:dead"))
            .query_async(&mut conn)
            .await;
    }
    Ok(())
}

/// Writes the simulated events as stream entries, pipelined in batches; the
/// baseline stream gets the first `baseline_events` of them.
async fn fill(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &BenchIndexArgs,
    stream: &str,
    baseline_stream: &str,
) -> anyhow::Result<Filled> {
    let mut network = Network::new(SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        ..SimConfig::default()
    });
    let started = Instant::now();
    let mut written = 0u64;
    let mut generated = 0u64;
    while generated < args.events {
        let mut pipe = redis::pipe();
        for _ in 0..1000 {
            if generated >= args.events {
                break;
            }
            let event = network.next_event();
            generated += 1;
            let Some(entry) = event_to_entry(&event, Compat::Full)? else {
                continue;
            };
            let seq = entry.seq.to_string();
            let fields = [
                ("type", entry.kind.as_str()),
                ("data", &entry.data),
                ("seq", &seq),
            ];
            pipe.xadd(stream, "*", &fields).ignore();
            if written < args.baseline_events {
                pipe.xadd(baseline_stream, "*", &fields).ignore();
            }
            written += 1;
        }
        pipe.query_async::<()>(conn)
            .await
            .context("XADD while filling")?;
        if generated.is_multiple_of(100_000) {
            println!(
                "  {generated} events ({:.0}/s)",
                generated as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
    }
    let truth = network.truth();
    let mut live_by_collection: HashMap<String, u64> = HashMap::new();
    for uri in truth.records.keys() {
        if let Some(collection) = uri.split('/').nth(3) {
            *live_by_collection.entry(collection.to_owned()).or_default() += 1;
        }
    }
    Ok(Filled {
        entries: written,
        accounts: truth.actors.len() as u64,
        live_records: truth.records.len() as u64,
        live_by_collection,
    })
}

/// Bytes on disk per event, per live record, and per row of the kinds the
/// compact schema is measured by (each table with its indexes and TOAST).
fn print_disk(outcomes: &[Outcome], filled: &Filled) {
    println!();
    println!(
        "disk once indexed (bytes; heap + TOAST + indexes; per the network's truth: {} live \
         records, {} accounts)",
        filled.live_records, filled.accounts
    );
    println!(
        "{:<40} {:>9} {:>9} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run", "MB", "per event", "per record", "like", "repost", "follow", "post", "actor"
    );
    let per = |bytes: i64, n: u64| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.0}", bytes as f64 / n as f64)
        }
    };
    for o in outcomes {
        let Some(disk) = &o.disk else { continue };
        let posts = disk.table("post_rows") + disk.table("post_counts");
        // An account's rows: its actor row, its profile, and its id in the
        // dictionary of the compact tables (migration 0021).
        let actors = disk.table("actors")
            + disk.table("actor_counts")
            + disk.table("profiles")
            + disk.table("dids");
        println!(
            "{:<40} {:>9.1} {:>9} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}",
            o.label,
            disk.total() as f64 / 1e6,
            per(disk.total(), o.events),
            per(disk.total(), filled.live_records),
            per(disk.table("like_rows"), filled.live("app.bsky.feed.like")),
            per(
                disk.table("repost_rows"),
                filled.live("app.bsky.feed.repost")
            ),
            per(
                disk.table("follow_rows"),
                filled.live("app.bsky.graph.follow")
            ),
            per(posts, filled.live("app.bsky.feed.post")),
            per(actors, filled.accounts),
        );
        let largest: Vec<String> = disk
            .tables
            .iter()
            .take(6)
            .map(|t| {
                format!(
                    "{} {:.1} MB (heap {:.1}, TOAST {:.1}, indexes {:.1})",
                    t.name,
                    t.total() as f64 / 1e6,
                    t.heap as f64 / 1e6,
                    t.toast as f64 / 1e6,
                    t.indexes as f64 / 1e6
                )
            })
            .collect();
        println!("  largest: {}", largest.join("; "));
    }
}

async fn run_child(args: &BenchIndexArgs, run: Run<'_>) -> anyhow::Result<Outcome> {
    let Run {
        label,
        stream,
        db,
        workers,
        batch_size,
        events,
        index_args,
    } = run;
    let label = label.as_str();
    let database_url = format!("{}/{db}", args.postgres.trim_end_matches('/'));
    let group = format!("{db}_group");
    let exe = std::env::current_exe().context("locating the skyhose binary")?;
    // The schema is applied before timing starts, so the figure is indexing alone.
    migrate_child(&exe, &database_url).await?;
    println!("{label}: indexing {events} events ...");
    let started = Instant::now();
    let machine_before = MachineCpu::now();
    let mut child = tokio::process::Command::new(&exe)
        .arg("index")
        .args(["--redis", &args.redis_url, "--database-url", &database_url])
        .args(["--stream-key", stream, "--group", &group])
        .args(["--dead-letter-key", &format!("{stream}:dead")])
        .args(["--workers", &workers.to_string()])
        .args(["--batch-size", &batch_size.to_string()])
        .arg("--exit-when-drained")
        .args(&index_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting skyhose index")?;
    let pid = child.id().context("index child has no pid")?;
    let (status, last, backends) = watch_child(&mut child, pid, &database_url).await?;
    let elapsed = started.elapsed();
    let machine = MachineCpu::now()
        .zip(machine_before)
        .map(|(after, before)| after.since(before));
    if !status.success() {
        bail!("skyhose index exited with {status} ({label})");
    }
    let (peak_rss_kb, cpu) = last.map_or((0, Duration::ZERO), |s| (s.peak_rss_kb, s.cpu));
    let postgres_cpu = backends.total();
    // Its connection would be cut by the forced drop below, and reported.
    drop(backends);
    let disk = if batch_size > 1 {
        let pool = skyhose_index::connect_pool(&database_url, 1)
            .with_context(|| format!("connecting to {database_url} for its size"))?;
        Some(Disk::read(&pool).await?)
    } else {
        None
    };
    if !args.keep {
        skyhose_index::drop_database(&database_url)
            .await
            .with_context(|| format!("dropping {database_url}"))?;
    }
    Ok(Outcome {
        label: label.to_owned(),
        events,
        elapsed,
        peak_rss_kb,
        cpu,
        postgres_cpu,
        machine,
        disk,
    })
}

/// Applies the schema to `database_url` with `skyhose migrate` (`exe`), so
/// that a benchmark's timed child starts on a migrated database.
pub(super) async fn migrate_child(exe: &std::path::Path, database_url: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(exe)
        .args(["migrate", "--database-url", database_url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .await
        .context("running skyhose migrate")?;
    if !status.success() {
        bail!("skyhose migrate failed for {database_url}");
    }
    Ok(())
}

/// Waits for `child` (process `pid`) to exit, sampling its CPU and peak
/// memory every 100 ms and the database's backends every 500 ms; returns its
/// exit status, its last sample and the backends' figures.
pub(super) async fn watch_child(
    child: &mut tokio::process::Child,
    pid: u32,
    database_url: &str,
) -> anyhow::Result<(
    std::process::ExitStatus,
    Option<super::bench::ProcSample>,
    Backends,
)> {
    let mut last = sample(pid);
    let mut backends = Backends::watch(database_url);
    let mut ticks = 0u32;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(s) = sample(pid) {
                    last = Some(s);
                }
                ticks += 1;
                if ticks.is_multiple_of(5) {
                    backends.sample().await;
                }
            }
        }
    };
    Ok((status, last, backends))
}

/// The CPU time of the PostgreSQL backends connected to one database, read
/// from /proc while they live (a backend's time is gone once it exits, so
/// the last reading of each is kept).
pub(super) struct Backends {
    pool: Option<skyhose_index::Pool>,
    latest: HashMap<i32, Duration>,
    /// The largest peak resident set of one backend, in kB.
    peak_rss_kb: u64,
    unreadable: bool,
}

impl Backends {
    pub(super) fn watch(database_url: &str) -> Self {
        Backends {
            pool: skyhose_index::connect_pool(database_url, 1).ok(),
            latest: HashMap::new(),
            peak_rss_kb: 0,
            unreadable: false,
        }
    }

    pub(super) async fn sample(&mut self) {
        let Some(pool) = &self.pool else { return };
        let Ok(client) = pool.get().await else { return };
        let Ok(rows) = client
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
        else {
            return;
        };
        for row in rows {
            let Ok(pid) = row.col::<i32>("pid", "listing the database's backends") else {
                self.unreadable = true;
                continue;
            };
            match u32::try_from(pid).ok().and_then(sample) {
                Some(s) => {
                    self.latest.insert(pid, s.cpu);
                    self.peak_rss_kb = self.peak_rss_kb.max(s.peak_rss_kb);
                }
                None => self.unreadable = true,
            }
        }
    }

    pub(super) fn total(&self) -> Option<Duration> {
        (!self.unreadable && !self.latest.is_empty()).then(|| self.latest.values().sum())
    }

    pub(super) fn peak_rss_kb(&self) -> Option<u64> {
        (!self.unreadable && self.peak_rss_kb > 0).then_some(self.peak_rss_kb)
    }
}
