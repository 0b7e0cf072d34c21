//! `skyhose faults`: the fault suite. Each scenario runs the pipeline as
//! child processes of this binary against the local Redis and PostgreSQL (or
//! private instances it starts for restarts), fed by a simulated relay in this
//! process; it injects one kind of fault many times and ends by comparing the
//! database with the simulator's ground truth, printing sent, indexed, lost,
//! duplicated, recovery time and peak RSS. Any difference fails the run.

mod audit;
mod flood;
mod kills;
mod outages;
mod procs;
mod relay_faults;
mod report;
mod stage;
mod truth;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use report::Row;
use stage::Ctx;

/// Options of `skyhose faults`.
#[derive(Args, Debug)]
pub struct FaultsArgs {
    /// The CI-size suite: a few faults of each kind and small event counts
    /// (a minute or two); without it, the long suite (hundreds of kills).
    #[arg(long)]
    pub quick: bool,
    /// Run only these scenarios (comma-separated or repeated); `--list` names them.
    #[arg(long = "scenario", value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Print the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Seed of the simulated networks and of the fault timings.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// SIGKILLs per kill scenario, instead of the suite size's number.
    #[arg(long)]
    pub kills: Option<usize>,
    /// Redis for the scenarios that do not restart it (keys under `faults:`).
    #[arg(
        long = "redis",
        env = "REDIS_URL",
        default_value = super::index::DEFAULT_REDIS_URL,
        value_parser = crate::config::check::redis_url
    )]
    pub redis_url: String,
    /// PostgreSQL server (no database) for the scenarios that do not restart
    /// it; each scenario creates and drops its own database there.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432",
        value_parser = crate::config::check::postgres_url
    )]
    pub postgres: String,
    /// Replace the table between the `faults-table` markers of this Markdown
    /// file (e.g. docs/reliability.md) with this run's.
    #[arg(long, value_name = "FILE")]
    pub write_docs: Option<PathBuf>,
    /// Keep the scenario databases, Redis keys and logs.
    #[arg(long)]
    pub keep: bool,
}

/// Fault counts and event totals of one suite size.
struct Size {
    kills: usize,
    run_kills: usize,
    outages: usize,
    relay_events: u64,
    flood_events: u64,
    catch_up: Duration,
}

const QUICK: Size = Size {
    kills: 4,
    run_kills: 2,
    outages: 1,
    relay_events: 4_000,
    flood_events: 20_000,
    catch_up: Duration::from_secs(90),
};

const LONG: Size = Size {
    kills: 200,
    run_kills: 100,
    outages: 8,
    relay_events: 40_000,
    flood_events: 400_000,
    catch_up: Duration::from_secs(600),
};

const SCENARIOS: [&str; 12] = [
    "kill-ingest",
    "kill-index",
    "kill-run",
    "redis-restart",
    "redis-wipe",
    "postgres-restart",
    "relay-drop",
    "relay-stall",
    "relay-malformed",
    "relay-outdated-cursor",
    "relay-too-slow",
    "flood",
];

pub async fn run(args: FaultsArgs) -> anyhow::Result<()> {
    if args.list {
        for name in SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    for name in &args.scenarios {
        if !SCENARIOS.contains(&name.as_str()) {
            bail!(
                "unknown scenario {name:?}; the scenarios are: {}",
                SCENARIOS.join(", ")
            );
        }
    }
    let size = if args.quick { QUICK } else { LONG };
    let work_dir = std::env::temp_dir().join(format!("skyhose-faults-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let ctx = Ctx {
        exe: std::env::current_exe().context("locating the skyhose binary")?,
        redis_url: args.redis_url.clone(),
        postgres: args.postgres.clone(),
        work_dir: work_dir.clone(),
        keep: args.keep,
        catch_up: size.catch_up,
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    for (i, name) in SCENARIOS.iter().enumerate() {
        if !args.scenarios.is_empty() && !args.scenarios.iter().any(|s| s == name) {
            continue;
        }
        let seed = args.seed.wrapping_mul(100).wrapping_add(i as u64);
        eprintln!("[faults] {name} ...");
        let at = Instant::now();
        let row = scenario(&ctx, &size, &args, name, seed)
            .await
            .with_context(|| format!("scenario {name} could not run"))?;
        eprintln!(
            "[faults] {name}: {} in {:.1} s{}",
            if row.passed() { "pass" } else { "FAIL" },
            at.elapsed().as_secs_f64(),
            row.problem
                .as_deref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default()
        );
        rows.push(row);
    }
    let wall = started.elapsed();
    println!("{}", report::text(&rows));
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed()).collect();
    if let Some(path) = &args.write_docs {
        let table = report::markdown(&rows, &command_line(&args), wall);
        report::write_docs(path, &table)?;
        eprintln!("[faults] table written to {}", path.display());
    }
    if failed.is_empty() {
        if !args.keep {
            let _ = std::fs::remove_dir_all(&work_dir);
        }
        return Ok(());
    }
    for row in &failed {
        eprintln!(
            "[faults] {} failed: {}",
            row.scenario,
            row.problem.as_deref().unwrap_or("")
        );
    }
    bail!(
        "{} of {} scenarios failed ({}); process logs are in {}",
        failed.len(),
        rows.len(),
        failed
            .iter()
            .map(|r| r.scenario)
            .collect::<Vec<_>>()
            .join(", "),
        work_dir.display()
    )
}

async fn scenario(
    ctx: &Ctx,
    size: &Size,
    args: &FaultsArgs,
    name: &str,
    seed: u64,
) -> anyhow::Result<Row> {
    let kills = args.kills.unwrap_or(size.kills);
    let run_kills = args.kills.unwrap_or(size.run_kills);
    let events = size.relay_events;
    match name {
        "kill-ingest" => kills::kill_ingest(ctx, seed, kills).await,
        "kill-index" => kills::kill_index(ctx, seed, kills).await,
        "kill-run" => kills::kill_run(ctx, seed, run_kills).await,
        "redis-restart" => outages::redis_restart(ctx, seed, size.outages).await,
        "redis-wipe" => outages::redis_wipe(ctx, seed, size.outages).await,
        "postgres-restart" => outages::postgres_restart(ctx, seed, size.outages).await,
        "relay-drop" => relay_faults::drops(ctx, seed, events).await,
        "relay-stall" => relay_faults::stalls(ctx, seed, events).await,
        "relay-malformed" => relay_faults::malformed(ctx, seed, events).await,
        "relay-outdated-cursor" => relay_faults::outdated_cursor(ctx, seed, events * 2).await,
        "relay-too-slow" => relay_faults::too_slow(ctx, seed, size.outages).await,
        "flood" => flood::flood(ctx, seed, size.flood_events).await,
        other => bail!("unknown scenario {other:?}"),
    }
}

/// The command that reproduces this run, for the document.
fn command_line(args: &FaultsArgs) -> String {
    let mut line = String::from("skyhose faults");
    if args.quick {
        line.push_str(" --quick");
    }
    if !args.scenarios.is_empty() {
        line.push_str(&format!(" --scenario {}", args.scenarios.join(",")));
    }
    if args.seed != 1 {
        line.push_str(&format!(" --seed {}", args.seed));
    }
    if let Some(kills) = args.kills {
        line.push_str(&format!(" --kills {kills}"));
    }
    line
}
