//! `skyhose bench <stage>`: throughput probes that print figures. Each stage
//! is one subcommand with its own args and runner.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::relay::{self, RelayConfig};
use skyhose_sim::{Network, SimConfig};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub stage: BenchStage,
}

#[derive(Subcommand, Debug)]
pub enum BenchStage {
    /// Pre-generate simulated frames, then time `skyhose ingest` (a child
    /// process, production settings: record CIDs verified, full entries)
    /// writing them all into Redis on loopback.
    Ingest(BenchIngestArgs),
    /// Pre-fill a stream with simulated events, then time `skyhose index` (a
    /// child process) with 1, 2 and 4 workers and a one-event-per-transaction baseline.
    Index(super::bench_index::BenchIndexArgs),
    /// Build (or reuse) an index of simulated events, serve it in this process
    /// and load the main screens' methods: profiles, author feeds, threads,
    /// the timeline, a custom feed, notifications and search.
    Api(super::bench_api::BenchApiArgs),
    /// Serve a simulated network with history from simulated repo hosts and
    /// time `skyhose backfill` (a child process) loading it into a fresh
    /// database, fully verified.
    Backfill(super::bench_backfill::BenchBackfillArgs),
}

#[derive(Args, Debug)]
pub struct BenchIngestArgs {
    /// Events to generate and ingest.
    #[arg(long, default_value_t = 500_000)]
    pub events: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, default_value_t = 5000)]
    pub accounts: usize,
    #[arg(
        long = "redis",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = crate::config::check::redis_url
    )]
    pub redis_url: String,
    /// Extra arguments passed to the `skyhose ingest` child (e.g. "--batch-max=2000").
    #[arg(long = "ingest-arg", allow_hyphen_values = true)]
    pub ingest_args: Vec<String>,
    /// Keep the benchmark's Redis keys afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Serve the accounts' DID documents from a simulated PLC directory and
    /// have ingest check every commit against them (the network then has
    /// no accounts joining, which the directory would not know; compare
    /// with `--ingest-arg=--no-verify-commits` on the same network).
    #[arg(long)]
    pub verify_commits: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.stage {
        BenchStage::Ingest(args) => ingest(args).await,
        BenchStage::Index(args) => super::bench_index::index(args).await,
        BenchStage::Api(args) => super::bench_api::api(args).await,
        BenchStage::Backfill(args) => super::bench_backfill::backfill(args).await,
    }
}

/// From /proc/<pid>: peak resident set (kB) and CPU time used (user + system).
pub(super) struct ProcSample {
    pub peak_rss_kb: u64,
    pub cpu: Duration,
}

pub(super) fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcSample {
        peak_rss_kb,
        cpu: clock_ticks(ticks),
    })
}

/// CPU time counted in /proc in clock ticks: USER_HZ is 100 on every Linux
/// platform this runs on.
fn clock_ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}

/// CPU time of the whole machine from /proc/stat, all cores together: busy
/// (user, system, interrupts, steal) and idle (idle and waiting for I/O).
#[derive(Clone, Copy)]
pub(super) struct MachineCpu {
    pub busy: Duration,
    pub idle: Duration,
}

impl MachineCpu {
    pub fn now() -> Option<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal; guest time is
        // already counted in user.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4)?;
        Some(MachineCpu {
            busy: clock_ticks(total - idle),
            idle: clock_ticks(idle),
        })
    }

    /// The time spent between `earlier` and `self`.
    pub fn since(self, earlier: MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
        }
    }
}

async fn ingest(args: BenchIngestArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sim = SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        ..SimConfig::default()
    };
    if args.verify_commits {
        sim.join_probability = 0.0;
    }
    // The same seed gives the same frames, so their size is known before the relay serves them.
    let started = Instant::now();
    let mut net = Network::new(sim.clone());
    let bytes: u64 = (0..args.events)
        .map(|_| net.next_frame().1.len() as u64)
        .sum();
    drop(net);
    let relay = relay::start(RelayConfig {
        sim: sim.clone(),
        total: Some(args.events),
        window: args.events as usize + 16,
        ..RelayConfig::default()
    })
    .await
    .context("starting the simulated relay")?;
    relay.wait_for_head(args.events as i64).await;
    let directory = match args.verify_commits {
        true => Some(
            plc::start(PlcConfig {
                sim: sim.clone(),
                ..PlcConfig::default()
            })
            .await
            .context("starting the simulated PLC directory")?,
        ),
        false => None,
    };
    eprintln!(
        "generated {} events ({:.1} MB of frames) in {:.1}s",
        args.events,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let prefix = format!("bench:ingest:{}", std::process::id());
    let exe = std::env::current_exe().context("locating the skyhose binary")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("ingest")
        .args(["--relay", &relay.url(), "--redis", &args.redis_url])
        .args(["--stream-key", &format!("{prefix}:events")])
        .args(["--cursor-key", &format!("{prefix}:cursor")])
        .args(["--status-key", &format!("{prefix}:status")])
        .args(["--max-stream-len", &(args.events * 2).to_string()])
        .args(["--cursor", "0", "--stop-after", &args.events.to_string()])
        .args(directory.iter().flat_map(|d| {
            [
                "--plc-url".to_owned(),
                d.url(),
                "--allow-loopback-identity".to_owned(),
            ]
        }))
        .args(&args.ingest_args)
        // Production settings unless an --ingest-arg says otherwise: an
        // environment that turns CID checks off would make the figure one
        // of a path production does not take.
        .env_remove("INGEST_NO_VERIFY_CIDS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().context("starting skyhose ingest")?;
    let pid = child.id().context("child pid")?;
    let mut last = None;
    let status = loop {
        if let Some(s) = sample(pid) {
            last = Some(s);
        }
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let wall = started.elapsed().as_secs_f64();
    relay.shutdown().await;
    if let Some(directory) = directory {
        directory.shutdown().await;
    }
    if !args.keep {
        let mut conn = skyhose_connect::redis_client(&args.redis_url)?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("DEL")
            .arg(format!("{prefix}:events"))
            .arg(format!("{prefix}:cursor"))
            .arg(format!("{prefix}:status"))
            .query_async::<()>(&mut conn)
            .await?;
    }
    if !status.success() {
        bail!("skyhose ingest exited with {status}");
    }
    let (peak_kb, cpu) = last.map_or((0, 0.0), |s| (s.peak_rss_kb, s.cpu.as_secs_f64()));
    println!("cores: {cores}");
    println!(
        "settings: {}",
        if args.ingest_args.is_empty() {
            "production (record CIDs verified, full entries)".to_owned()
        } else {
            format!("production with {}", args.ingest_args.join(" "))
        }
    );
    println!("events: {}", args.events);
    println!("wall: {wall:.2}s");
    println!("events/s: {:.0}", args.events as f64 / wall);
    println!("MB/s: {:.1}", bytes as f64 / 1e6 / wall);
    println!(
        "child cpu: {cpu:.2}s ({:.0} events per cpu-second)",
        args.events as f64 / cpu.max(1e-9)
    );
    println!("child peak RSS: {:.1} MB", peak_kb as f64 / 1024.0);
    Ok(())
}

/// Bytes of the index's tables on disk (the backfill queue's and the
/// schema's bookkeeping left out).
#[derive(Default)]
pub(super) struct Disk {
    pub heap: i64,
    pub toast: i64,
    pub indexes: i64,
    /// Largest first.
    pub tables: Vec<TableSize>,
}

pub(super) struct TableSize {
    pub name: String,
    pub heap: i64,
    pub toast: i64,
    pub indexes: i64,
}

impl TableSize {
    pub fn total(&self) -> i64 {
        self.heap + self.toast + self.indexes
    }
}

impl Disk {
    pub async fn read(pool: &skyhose_index::Pool) -> anyhow::Result<Disk> {
        use skyhose_index::RowExt;
        let client = pool.get().await.context("connecting for the sizes")?;
        let rows = client
            .query(
                "SELECT c.relname::text AS name, pg_relation_size(c.oid) AS heap, \
                   coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast, \
                   pg_indexes_size(c.oid) AS indexes \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
                   AND c.relname NOT LIKE 'backfill\\_%' AND c.relname <> 'schema_migrations'",
                &[],
            )
            .await
            .context("reading the tables' sizes")?;
        let mut disk = Disk::default();
        for row in rows {
            let table = TableSize {
                name: row.col("name", "a table's name")?,
                heap: row.col("heap", "a table's heap size")?,
                toast: row.col("toast", "a table's TOAST size")?,
                indexes: row.col("indexes", "a table's index size")?,
            };
            disk.heap += table.heap;
            disk.toast += table.toast;
            disk.indexes += table.indexes;
            disk.tables.push(table);
        }
        disk.tables.sort_by_key(|t| std::cmp::Reverse(t.total()));
        Ok(disk)
    }

    pub fn total(&self) -> i64 {
        self.heap + self.toast + self.indexes
    }

    /// One table's bytes, 0 when it does not exist.
    pub fn table(&self, name: &str) -> i64 {
        self.tables
            .iter()
            .find(|t| t.name == name)
            .map_or(0, TableSize::total)
    }
}
