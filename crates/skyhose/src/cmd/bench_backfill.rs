//! `skyhose bench backfill`: a simulated network with history served by
//! simulated repo hosts and a PLC directory on loopback, loaded into a fresh
//! database by a `skyhose backfill` child process (listing, fetching, full
//! verification, loading); prints records/s, repos/s, bytes/s, peak RSS of
//! the child and of the PostgreSQL backends serving it, where the time went,
//! bytes on disk per record, and whether the index equals the network.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use skyhose_sim::hosts::{self, HostsConfig};
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::{Network, SimConfig};
use tokio::io::AsyncReadExt;

use super::bench::{Disk, MachineCpu};
use super::bench_index::{migrate_child, watch_child};

#[derive(Args, Debug)]
pub struct BenchBackfillArgs {
    /// Accounts of the simulated network, each with a repo to load.
    #[arg(long, default_value_t = 2000)]
    pub accounts: usize,
    /// Commits each account made before the firehose window (1-3 records
    /// each, a profile first): the size of the repos.
    #[arg(long, default_value_t = 150)]
    pub history_commits: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated repo hosts (PDSes) the accounts are spread over.
    #[arg(long, default_value_t = 2)]
    pub hosts: usize,
    /// `skyhose backfill --concurrency`.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// `skyhose backfill --per-host`.
    #[arg(long, default_value_t = 16)]
    pub per_host: usize,
    /// Server URL; the run creates and drops its own database there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432", value_parser = crate::config::check::postgres_url)]
    pub postgres: String,
    /// Keep the benchmark's database afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Extra arguments for the `skyhose backfill` child (e.g. "--batch-records=8000").
    #[arg(long = "backfill-arg", allow_hyphen_values = true)]
    pub backfill_args: Vec<String>,
}

/// What the child prints with `--summary-json`.
struct ChildSummary {
    repos_done: u64,
    repos_failed: u64,
    records: u64,
    bytes: u64,
    fetch_secs: f64,
    verify_secs: f64,
    json_secs: f64,
    load_secs: f64,
    batches: u64,
}

impl ChildSummary {
    fn parse(line: &str) -> Option<ChildSummary> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let int = |name: &str| v.get(name).and_then(serde_json::Value::as_u64);
        let secs = |name: &str| v.get(name).and_then(serde_json::Value::as_f64);
        Some(ChildSummary {
            repos_done: int("repos_done")?,
            repos_failed: int("repos_failed")?,
            records: int("records")?,
            bytes: int("bytes")?,
            fetch_secs: secs("fetch_secs")?,
            verify_secs: secs("verify_secs")?,
            json_secs: secs("json_secs")?,
            load_secs: secs("load_secs")?,
            batches: int("batches")?,
        })
    }
}

pub async fn backfill(args: BenchBackfillArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sim = SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        history_commits_per_account: args.history_commits,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let network = {
        let sim = sim.clone();
        tokio::task::spawn_blocking(move || Network::new(sim))
            .await
            .context("generating the network")?
    };
    let truth = network.truth();
    println!(
        "network: {} accounts, {} records, generated in {:.1}s",
        truth.actors.len(),
        truth.records.len(),
        started.elapsed().as_secs_f64()
    );
    let network = Arc::new(Mutex::new(network));
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let hosts = hosts::start(
        HostsConfig {
            listen: vec![any; args.hosts.max(1)],
            ..HostsConfig::default()
        },
        network.clone(),
        sim.clone(),
    )
    .await
    .context("starting the simulated repo hosts")?;
    let plc = plc::start(PlcConfig {
        listen: any,
        sim: sim.clone(),
        pds_endpoints: hosts.urls(),
    })
    .await
    .context("starting the simulated PLC directory")?;

    let db = format!("bench_backfill_{}", std::process::id());
    let database_url = format!("{}/{db}", args.postgres.trim_end_matches('/'));
    let result = measure(&args, &database_url, &hosts.front_url(), &plc.url(), cores).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(err) => {
            plc.shutdown().await;
            hosts.shutdown().await;
            return Err(err);
        }
    };
    plc.shutdown().await;
    hosts.shutdown().await;

    // The index against the network it was loaded from: every record with
    // its CID, and the counts of every post.
    let pool = skyhose_index::connect_pool(&database_url, 2)?;
    let snapshot = skyhose_index::snapshot(&pool)
        .await
        .context("reading the index")?;
    let missing_or_wrong = truth
        .records
        .iter()
        .filter(|(uri, cid)| snapshot.records.get(*uri) != Some(*cid))
        .count();
    let extra = snapshot
        .records
        .keys()
        .filter(|uri| !truth.records.contains_key(*uri))
        .count();
    let posts_differing = truth
        .posts
        .iter()
        .filter(|(uri, want)| {
            snapshot.posts.get(*uri).is_none_or(|got| {
                (got.likes, got.reposts, got.replies, got.quotes)
                    != (
                        want.likes as i64,
                        want.reposts as i64,
                        want.replies as i64,
                        want.quotes as i64,
                    )
            })
        })
        .count();
    let disk = Disk::read(&pool).await?;
    drop(pool);
    if !args.keep {
        skyhose_index::drop_database(&database_url)
            .await
            .with_context(|| format!("dropping {database_url}"))?;
    }

    let Outcome {
        summary: s,
        wall,
        peak_rss_kb,
        cpu,
        postgres_cpu,
        postgres_peak_rss_kb,
        machine,
    } = outcome;
    let wall_s = wall.as_secs_f64().max(1e-9);
    let records = s.records.max(1) as f64;
    println!();
    println!(
        "backfill benchmark: {} accounts x {} history commits, {cores} cores (PostgreSQL on the same machine)",
        args.accounts, args.history_commits
    );
    println!(
        "repos: {} done, {} failed; records: {}; CAR bytes: {:.1} MB",
        s.repos_done,
        s.repos_failed,
        s.records,
        s.bytes as f64 / 1e6
    );
    println!("wall: {wall_s:.2}s");
    println!("records/s: {:.0}", s.records as f64 / wall_s);
    println!("repos/s: {:.1}", s.repos_done as f64 / wall_s);
    println!("MB/s: {:.2}", s.bytes as f64 / 1e6 / wall_s);
    println!(
        "peak RSS: backfill {:.1} MB; PostgreSQL backends {} (largest single backend, shared buffers it touched included)",
        peak_rss_kb as f64 / 1024.0,
        postgres_peak_rss_kb.map_or("-".to_owned(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
    );
    let per_record = |secs: f64| secs * 1e6 / records;
    println!(
        "CPU: backfill {:.1}s ({:.1} µs/record), PostgreSQL backends {} , machine busy {}",
        cpu.as_secs_f64(),
        per_record(cpu.as_secs_f64()),
        postgres_cpu.map_or("-".to_owned(), |c| format!(
            "{:.1}s ({:.1} µs/record)",
            c.as_secs_f64(),
            per_record(c.as_secs_f64())
        )),
        machine.map_or("-".to_owned(), |m| format!(
            "{:.1}s of {:.1}s",
            m.busy.as_secs_f64(),
            (m.busy + m.idle).as_secs_f64()
        )),
    );
    println!(
        "time by step (summed over tasks): fetch {:.1}s, verify {:.1}s ({:.1} µs/record), JSON {:.1}s ({:.1} µs/record), database {:.1}s in {} batches ({:.0} records, {:.0} ms each)",
        s.fetch_secs,
        s.verify_secs,
        per_record(s.verify_secs),
        s.json_secs,
        per_record(s.json_secs),
        s.load_secs,
        s.batches,
        records / s.batches.max(1) as f64,
        s.load_secs * 1e3 / s.batches.max(1) as f64,
    );
    println!(
        "disk per record: {:.0} bytes (heap {:.0}, TOAST {:.0}, indexes {:.0}); {:.1} MB in all",
        disk.total() as f64 / records,
        disk.heap as f64 / records,
        disk.toast as f64 / records,
        disk.indexes as f64 / records,
        disk.total() as f64 / 1e6,
    );
    let largest: Vec<String> = disk
        .tables
        .iter()
        .take(6)
        .map(|t| format!("{} {:.0}", t.name, t.total() as f64 / records))
        .collect();
    println!("  largest tables, bytes per record: {}", largest.join(", "));
    println!(
        "index vs network: {} of {} records missing or with another CID, {extra} extra; {posts_differing} of {} posts with other counts",
        missing_or_wrong,
        truth.records.len(),
        truth.posts.len()
    );
    let mut command = format!(
        "skyhose bench backfill --accounts {} --history-commits {} --seed {} --hosts {} --concurrency {} --per-host {}",
        args.accounts, args.history_commits, args.seed, args.hosts, args.concurrency, args.per_host
    );
    for extra in &args.backfill_args {
        command.push_str(&format!(" --backfill-arg={extra}"));
    }
    println!("reproduce: cargo build --release -p skyhose && target/release/{command}");
    if missing_or_wrong + extra + posts_differing > 0 || s.repos_failed > 0 {
        bail!("the index does not equal the network it was loaded from");
    }
    Ok(())
}

struct Outcome {
    summary: ChildSummary,
    wall: Duration,
    peak_rss_kb: u64,
    cpu: Duration,
    postgres_cpu: Option<Duration>,
    postgres_peak_rss_kb: Option<u64>,
    machine: Option<MachineCpu>,
}

async fn measure(
    args: &BenchBackfillArgs,
    database_url: &str,
    source: &str,
    plc_url: &str,
    cores: usize,
) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe().context("locating the skyhose binary")?;
    // The schema is applied before timing starts.
    migrate_child(&exe, database_url).await?;
    println!("backfilling on {cores} cores ...");
    let started = Instant::now();
    let machine_before = MachineCpu::now();
    let mut child = tokio::process::Command::new(&exe)
        .arg("backfill")
        .args(["--database-url", database_url, "--source", source])
        .args(["--plc-url", plc_url, "--allow-loopback-identity"])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--per-host", &args.per_host.to_string()])
        .args(["--log-every", "10s", "--summary-json"])
        .args(&args.backfill_args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting skyhose backfill")?;
    let pid = child.id().context("backfill child has no pid")?;
    let mut stdout = child.stdout.take().context("backfill child's stdout")?;
    let reading = tokio::spawn(async move {
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.map(|_| out)
    });
    let (status, last, backends) = watch_child(&mut child, pid, database_url).await?;
    let wall = started.elapsed();
    let machine = MachineCpu::now()
        .zip(machine_before)
        .map(|(after, before)| after.since(before));
    if !status.success() {
        bail!("skyhose backfill exited with {status}");
    }
    let out = reading
        .await
        .context("reading the backfill's output")?
        .context("reading the backfill's output")?;
    let summary = out
        .lines()
        .rev()
        .find_map(ChildSummary::parse)
        .context("the backfill printed no summary")?;
    let (peak_rss_kb, cpu) = last.map_or((0, Duration::ZERO), |s| (s.peak_rss_kb, s.cpu));
    Ok(Outcome {
        summary,
        wall,
        peak_rss_kb,
        cpu,
        postgres_cpu: backends.total(),
        postgres_peak_rss_kb: backends.peak_rss_kb(),
        machine,
    })
}
