use std::time::Duration;

use anyhow::Context;
use clap::Args;
use skyhose_index::{CancellationToken, IndexConfig};

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/skyhose";

/// Options of `skyhose index`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    #[arg(long = "redis", env = "REDIS_URL", default_value = DEFAULT_REDIS_URL, value_parser = crate::config::check::redis_url)]
    pub redis_url: String,
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
    /// Stream to read.
    #[arg(long, env = "REDIS_STREAM_KEY", default_value = skyhose_index::DEFAULT_STREAM_KEY)]
    pub stream_key: String,
    /// Stream that receives entries that cannot be indexed.
    #[arg(long, env = "REDIS_DEAD_LETTER_KEY", default_value = skyhose_index::DEFAULT_DEAD_LETTER_KEY)]
    pub dead_letter_key: String,
    /// Consumer group shared by every indexer.
    #[arg(long, default_value = skyhose_index::DEFAULT_GROUP)]
    pub group: String,
    /// Consumer name (default `<hostname>-<pid>`); worker i reads as `<name>-<i>`.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Worker tasks in this process.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Entries per XREADGROUP and per transaction.
    #[arg(long, default_value_t = skyhose_index::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Take over entries pending longer than this in another consumer (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub claim_idle: Duration,
    /// Dead-letter an entry delivered more often than this.
    #[arg(long, default_value_t = 5)]
    pub max_deliveries: u64,
    /// Exit once every entry of the stream is acknowledged.
    #[arg(long)]
    pub exit_when_drained: bool,
    /// Resolve accounts' identities (at first sight and on every #identity)
    /// and keep only verified handles; without it the #identity handle is
    /// stored as sent.
    #[arg(long, env = "RESOLVE_IDENTITIES")]
    pub resolve_identities: bool,
    #[command(flatten)]
    pub identity: super::serve::IdentityArgs,
    #[command(flatten)]
    pub backfill: LiveBackfillArgs,
}

/// A backfill beside the live index (`index`, `run`).
#[derive(Args, Debug, Clone)]
pub struct LiveBackfillArgs {
    /// Load repos beside the live index: list this relay's hosts (or this
    /// PDS) and load every repo, then keep loading the accounts the stream
    /// shows for the first time and the repos it shows diverging (#sync,
    /// desynchronized, tooBig, unreadable ops, prevData not the root held),
    /// each from the PDS its DID document names (--plc-url), else from the
    /// first --backfill-source. Repeat for several sources; none: no backfill.
    #[arg(
        long = "backfill-source",
        env = "BACKFILL_SOURCES",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub sources: Vec<String>,
    /// Repos fetched, verified and loaded at once beside the index.
    #[arg(
        long = "backfill-concurrency",
        env = "BACKFILL_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,
}

impl LiveBackfillArgs {
    /// The backfill to run beside the index, if any source is given.
    pub fn config(
        &self,
        database_url: &str,
        identity: skyhose_identity::IdentityConfig,
    ) -> Option<skyhose_sync::BackfillConfig> {
        if self.sources.is_empty() {
            return None;
        }
        let mut cfg = skyhose_sync::BackfillConfig::new(database_url, identity);
        cfg.sources = self.sources.clone();
        cfg.concurrency = self.concurrency.max(1);
        cfg.exit_when_drained = false;
        cfg.repo_sync = true;
        Some(cfg)
    }
}

/// Starts `cfg`'s backfill, which runs until `stop`.
pub fn spawn_backfill(
    cfg: skyhose_sync::BackfillConfig,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let summary = skyhose_sync::run(cfg, None, stop)
            .await
            .context("backfilling beside the index")?;
        tracing::info!(?summary, "backfill stopped");
        Ok(())
    })
}

/// Stops a backfill started by [`spawn_backfill`] and reports how it ended.
pub async fn stop_backfill(
    backfill: Option<(
        tokio::task::JoinHandle<anyhow::Result<()>>,
        CancellationToken,
    )>,
) {
    if let Some((task, stop)) = backfill {
        stop.cancel();
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "backfill failed"),
            Err(e) => tracing::error!(error = %e, "backfill task failed"),
        }
    }
}

/// `30s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skyhose".into())
}

fn default_consumer() -> String {
    format!("{}-{}", host_name(), std::process::id())
}

impl IndexArgs {
    pub fn config(&self) -> anyhow::Result<IndexConfig> {
        let mut cfg = IndexConfig::new(&self.redis_url, &self.database_url);
        cfg.stream_key = self.stream_key.clone();
        cfg.dead_letter_key = self.dead_letter_key.clone();
        cfg.group = self.group.clone();
        cfg.consumer = self.consumer.clone().unwrap_or_else(default_consumer);
        cfg.workers = self.workers;
        cfg.batch_size = self.batch_size;
        cfg.claim_idle = self.claim_idle;
        cfg.max_deliveries = self.max_deliveries;
        cfg.exit_when_drained = self.exit_when_drained;
        if self.resolve_identities {
            cfg.identity = Some(self.identity.config()?);
        }
        cfg.repo_sync = !self.backfill.sources.is_empty();
        Ok(cfg)
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

pub async fn run(args: IndexArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let backfill = match args
        .backfill
        .config(&args.database_url, args.identity.config()?)
    {
        Some(cfg) => {
            let stop = CancellationToken::new();
            Some((spawn_backfill(cfg, stop.clone()), stop))
        }
        None => None,
    };
    let outcome = skyhose_index::run(args.config()?, shutdown).await;
    stop_backfill(backfill).await;
    let summary = outcome.context("indexing the stream")?;
    tracing::info!(?summary, "index finished");
    Ok(())
}
