use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use skyhose_sync::{BackfillConfig, CancellationToken};

use crate::cmd::index::{cancel_on_signal, parse_duration, DEFAULT_DATABASE_URL};

/// Options of `skyhose backfill`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackfillArgs {
    #[command(subcommand)]
    pub command: Option<BackfillCommand>,
    #[command(flatten)]
    pub run: BackfillRunArgs,
}

#[derive(Subcommand, Debug)]
pub enum BackfillCommand {
    /// Print the queue's repos by state, the sources' listing state and the
    /// latest failures.
    Status(BackfillStatusArgs),
}

#[derive(Args, Debug)]
pub struct BackfillStatusArgs {
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
    /// How many of the latest failures to print.
    #[arg(long, default_value_t = 10)]
    pub errors: i64,
}

#[derive(Args, Debug)]
pub struct BackfillRunArgs {
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
    /// Relay or PDS to list repos from (`listHosts`, then `listRepos` on each
    /// host); repeat for several. Repos named by --did are fetched from the first.
    #[arg(long = "source", value_name = "URL")]
    pub sources: Vec<String>,
    /// Load only these repos (again, whatever their state), without listing the sources.
    #[arg(long = "did", value_name = "DID")]
    pub dids: Vec<String>,
    /// Where the accounts' DID documents (their signing keys) come from.
    #[command(flatten)]
    pub identity: super::serve::IdentityArgs,
    /// Repos fetched, verified and loaded at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Requests in flight to one host.
    #[arg(long, default_value_t = 4)]
    pub per_host: usize,
    /// Deadline of one request (getRepo of a large repo included).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Largest repo CAR accepted, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub max_repo_mib: usize,
    /// Attempts before a repo failing transiently is recorded as failed.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: i32,
    /// A repo claimed longer ago than this by a process that did not finish
    /// it (killed) is claimed again.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub reclaim_after: Duration,
    /// How often the progress line is printed.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub log_every: Duration,
    /// Verified repos are loaded together, one transaction per batch; a
    /// batch is loaded once it holds this many records.
    #[arg(long, default_value_t = skyhose_sync::BatchConfig::default().max_records)]
    pub batch_records: usize,
    /// A batch is loaded at most this long after its first repo was verified.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub batch_linger: Duration,
    /// Batches loaded at once, each on its own connection.
    #[arg(long, default_value_t = skyhose_sync::BatchConfig::default().loaders)]
    pub load_tasks: usize,
    /// Print the run's summary (counts and where the time went) as one
    /// JSON line on stdout when it ends.
    #[arg(long)]
    pub summary_json: bool,
}

impl BackfillRunArgs {
    pub fn config(&self) -> anyhow::Result<BackfillConfig> {
        let mut cfg = BackfillConfig::new(&self.database_url, self.identity.config()?);
        cfg.sources = self.sources.clone();
        cfg.dids = self.dids.clone();
        cfg.enumerate = self.dids.is_empty();
        cfg.concurrency = self.concurrency;
        cfg.per_host = self.per_host;
        cfg.request_timeout = self.request_timeout;
        cfg.max_repo_bytes = self.max_repo_mib.saturating_mul(1 << 20);
        cfg.max_attempts = self.max_attempts;
        cfg.reclaim_after = self.reclaim_after;
        cfg.log_every = self.log_every;
        cfg.batch = skyhose_sync::BatchConfig {
            max_records: self.batch_records.max(1),
            linger: self.batch_linger,
            loaders: self.load_tasks.max(1),
        };
        cfg.exit_when_drained = true;
        Ok(cfg)
    }
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BackfillCommand::Status(status)) => print_status(status).await,
        None => backfill(args.run).await,
    }
}

async fn backfill(args: BackfillRunArgs) -> anyhow::Result<()> {
    if args.sources.is_empty() {
        anyhow::bail!("backfill needs at least one --source URL");
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let summary = skyhose_sync::run(args.config()?, None, shutdown)
        .await
        .context("backfilling")?;
    tracing::info!(?summary, "backfill finished");
    if args.summary_json {
        let t = &summary.timings;
        println!(
            "{}",
            serde_json::json!({
                "repos_done": summary.repos_done,
                "repos_failed": summary.repos_failed,
                "records": summary.records,
                "bytes": summary.bytes,
                "fetch_secs": t.fetch.as_secs_f64(),
                "verify_secs": t.verify.as_secs_f64(),
                "json_secs": t.json.as_secs_f64(),
                "load_secs": t.load.as_secs_f64(),
                "batches": t.batches,
            })
        );
    }
    Ok(())
}

async fn print_status(args: BackfillStatusArgs) -> anyhow::Result<()> {
    let pool = skyhose_index::connect_pool(&args.database_url, 1).with_context(|| {
        format!(
            "connecting to {}",
            crate::config::mask::mask_url(&args.database_url)
        )
    })?;
    let status = skyhose_sync::Queue::new(pool)
        .status(args.errors)
        .await
        .context("reading the backfill queue")?;
    print!("{status}");
    Ok(())
}
