use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use skyhose_identity::KeySource;
use skyhose_ingest::config::{
    DEFAULT_CURSOR_KEY, DEFAULT_GROUP, DEFAULT_MAX_STREAM_LEN, DEFAULT_STATUS_KEY,
    DEFAULT_STREAM_KEY,
};
use skyhose_ingest::{
    CancellationToken, Compat, IngestConfig, IngestError, IngestSummary, VerifyConfig,
};

use super::index::{cancel_on_signal, parse_duration};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// Every event kind; commits carry rev, since, time and commit.
    Full,
    /// Only commit, identity and account entries, shaped as the seed system wrote them.
    Seed,
}

/// Options of `skyhose ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Relay to subscribe to (ws:// or wss://); the subscribeRepos path is added if missing.
    #[arg(
        long = "relay",
        env = "RELAY_URL",
        default_value = "wss://bsky.network",
        value_parser = crate::config::check::relay_url
    )]
    pub relay_url: String,
    #[arg(
        long = "redis",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = crate::config::check::redis_url
    )]
    pub redis_url: String,
    #[arg(long, env = "REDIS_STREAM_KEY", default_value = DEFAULT_STREAM_KEY)]
    pub stream_key: String,
    /// Key holding the seq of the last event in the stream.
    #[arg(long, env = "REDIS_CURSOR_KEY", default_value = DEFAULT_CURSOR_KEY)]
    pub cursor_key: String,
    /// Key of the JSON status (connected, events processed, cursor, rate), expiring.
    #[arg(long, env = "REDIS_STATUS_KEY", default_value = DEFAULT_STATUS_KEY)]
    pub status_key: String,
    /// Stream length at which reading pauses until consumer groups catch up
    /// (entries are trimmed only once every group has read them).
    #[arg(long, env = "REDIS_MAX_STREAM_LEN", default_value_t = DEFAULT_MAX_STREAM_LEN)]
    pub max_stream_len: u64,
    /// Consumer group created at start so the stream keeps entries for it.
    #[arg(long, default_value = DEFAULT_GROUP)]
    pub group: String,
    /// Resume from this seq, whatever Redis says.
    #[arg(long)]
    pub cursor: Option<i64>,
    /// Resume point used only when Redis has neither cursor nor stream.
    #[arg(long, env = "INGEST_FALLBACK_CURSOR")]
    pub fallback_cursor: Option<i64>,
    /// Index database: its committed watermark becomes the fallback cursor
    /// (unless --fallback-cursor is given), so a Redis that lost its data
    /// resumes where the index stopped.
    #[arg(long, env = "DATABASE_URL", value_parser = crate::config::check::postgres_url)]
    pub database_url: Option<String>,
    /// Entry shape (see docs/stream-format.md).
    #[arg(long, value_enum, default_value = "full")]
    pub compat: CompatArg,
    /// Skip re-hashing every record block against its CID (on by default; a
    /// block that does not match is passed on flagged, never as the record).
    #[arg(long, env = "INGEST_NO_VERIFY_CIDS")]
    pub no_verify_cids: bool,
    /// Entries per batch written to Redis (one atomic script with the cursor).
    #[arg(long, default_value_t = 1000)]
    pub batch_max: usize,
    /// Longest an entry waits for its batch to fill (e.g. 50ms).
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub batch_linger: Duration,
    /// Longest reconnect delay (delays grow exponentially with full jitter).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub backoff_cap: Duration,
    /// A connection that lasted this long resets the reconnect delay.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub healthy_reset: Duration,
    /// Reconnect when the relay sends nothing for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    /// Interval of the WebSocket pings sent to the relay; its pongs keep a
    /// quiet relay from counting as stalled.
    #[arg(long, env = "RELAY_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Interval of the progress log line and status key.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub status_interval: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "INGEST_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest relay message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_frame_bytes: usize,
    /// Exit after writing this many events (benchmarks).
    #[arg(long)]
    pub stop_after: Option<u64>,
    #[command(flatten)]
    pub verify: VerifyArgs,
}

/// Whether ingest checks commits (see docs/stream-format.md). `ingest` and
/// `run` share these flags, each with its own default.
#[derive(Args, Debug)]
pub struct CommitChecks {
    /// Check each commit's signature (and its ops against `prevData`) with
    /// the account's key from its DID document; a commit that fails is not
    /// written and becomes a resync request (a `sync` entry with a
    /// `reason`). On by default in `ingest` when --plc-url is given and in
    /// `run --relay sim`.
    #[arg(
        long,
        env = "INGEST_VERIFY_COMMITS",
        conflicts_with = "no_verify_commits"
    )]
    pub verify_commits: bool,
    /// Write commits unchecked, whatever the default.
    #[arg(long, env = "INGEST_NO_VERIFY_COMMITS")]
    pub no_verify_commits: bool,
}

impl CommitChecks {
    pub fn wanted(&self, by_default: bool) -> bool {
        !self.no_verify_commits && (self.verify_commits || by_default)
    }
}

/// The commit checks of `ingest`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub checks: CommitChecks,
    /// PLC directory the account keys of did:plc accounts come from
    /// (default with --verify-commits: https://plc.directory).
    #[arg(long, env = "PLC_URL")]
    pub plc_url: Option<String>,
    /// Frames read ahead of the oldest commit still being checked.
    #[arg(long, env = "INGEST_VERIFY_IN_FLIGHT", default_value_t = 512)]
    pub verify_in_flight: usize,
    /// How long an account's key is retried after transient failures before
    /// its commits become resync requests (`key_unavailable`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub key_retry_for: Duration,
    /// For tests only: allow a PLC directory on 127.0.0.1 over plain HTTP.
    #[arg(long, env = "ALLOW_LOOPBACK_IDENTITY")]
    pub allow_loopback_identity: bool,
}

impl VerifyArgs {
    /// The checks' settings, or `None` when they are off.
    pub fn config(&self) -> anyhow::Result<Option<VerifyConfig>> {
        if !self.checks.wanted(self.plc_url.is_some()) {
            return Ok(None);
        }
        let plc_url = self
            .plc_url
            .clone()
            .unwrap_or_else(|| "https://plc.directory".to_owned());
        let mut identity = skyhose_identity::IdentityConfig::new(plc_url);
        identity.allow_loopback = self.allow_loopback_identity;
        identity.check().context("--plc-url")?;
        let keys: Arc<dyn KeySource> = Arc::new(skyhose_identity::Resolver::new(identity));
        Ok(Some(VerifyConfig {
            max_in_flight: self.verify_in_flight.max(1),
            key_retry_for: self.key_retry_for,
            ..VerifyConfig::new(keys)
        }))
    }
}

impl IngestArgs {
    pub fn config(&self) -> IngestConfig {
        IngestConfig {
            relay_url: self.relay_url.clone(),
            redis_url: self.redis_url.clone(),
            stream_key: self.stream_key.clone(),
            cursor_key: self.cursor_key.clone(),
            status_key: self.status_key.clone(),
            group: self.group.clone(),
            max_stream_len: self.max_stream_len,
            cursor_override: self.cursor,
            fallback_cursor: self.fallback_cursor,
            compat: match self.compat {
                CompatArg::Full => Compat::Full,
                CompatArg::Seed => Compat::Seed,
            },
            verify_cids: !self.no_verify_cids,
            batch_max: self.batch_max.max(1),
            batch_linger: self.batch_linger,
            backoff_cap: self.backoff_cap,
            healthy_reset: self.healthy_reset,
            stall_timeout: self.stall_timeout,
            ping_interval: self.ping_interval,
            status_interval: self.status_interval,
            metrics_listen: self.metrics_listen,
            max_frame_bytes: self.max_frame_bytes,
            stop_after: self.stop_after,
            ..IngestConfig::default()
        }
    }
}

/// The seq committed in the index database at `database_url`.
pub async fn read_watermark(database_url: &str) -> Result<Option<i64>, skyhose_index::IndexError> {
    let pool = skyhose_index::connect_pool(database_url, 1)?;
    skyhose_index::resume_seq(&pool).await
}

/// The index's committed watermark, or `None` (logged) when it cannot be read:
/// it only matters if Redis lost its data, so it must not stop ingest.
async fn index_watermark(database_url: &str) -> Option<i64> {
    match read_watermark(database_url).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::warn!(error = %e, "index watermark unreadable; no fallback cursor");
            None
        }
    }
}

/// How long ingest waits for PostgreSQL to tell the watermark after Redis
/// lost its data, before giving up.
const WATERMARK_WAIT: Duration = Duration::from_secs(120);

/// Runs ingest; when Redis loses its data mid-run (it keeps nothing on disk),
/// starts again from the index's committed watermark, read afresh from
/// `database_url`: the entries Redis lost after it were never indexed, and
/// continuing from ingest's own cursor would skip them for good.
pub async fn run_resuming(
    mut config: IngestConfig,
    database_url: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<IngestSummary> {
    loop {
        match skyhose_ingest::run(config.clone(), shutdown.clone()).await {
            Err(IngestError::RedisLostData { written, detail }) if !shutdown.is_cancelled() => {
                let Some(url) = &database_url else {
                    return Err(anyhow::anyhow!(IngestError::RedisLostData {
                        written,
                        detail
                    }))
                    .context("without --database-url ingest cannot tell where the index stopped");
                };
                let watermark = wait_for_watermark(url, &shutdown).await?;
                tracing::warn!(
                    lost_cursor = ?written,
                    resume_from = ?watermark,
                    detail,
                    "Redis lost its data; resuming from the index's watermark"
                );
                config.cursor_override = None;
                config.fallback_cursor = watermark.or(config.fallback_cursor);
            }
            other => return Ok(other?),
        }
    }
}

/// The watermark, retried while PostgreSQL is unreachable (bounded).
async fn wait_for_watermark(
    database_url: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<i64>> {
    let deadline = tokio::time::Instant::now() + WATERMARK_WAIT;
    loop {
        match read_watermark(database_url).await {
            Ok(seq) => return Ok(seq),
            Err(e) if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() => {
                return Err(e).context("reading the index watermark after Redis lost its data")
            }
            Err(e) => {
                tracing::warn!(error = %e, "index watermark unreadable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut config = args.config();
    config.verify = args.verify.config()?;
    if config.verify.is_some() {
        tracing::info!("checking each commit against its account's key");
    }
    if let (None, Some(url)) = (config.fallback_cursor, &args.database_url) {
        config.fallback_cursor = index_watermark(url).await;
    }
    let summary = run_resuming(config, args.database_url.clone(), shutdown)
        .await
        .with_context(|| format!("ingesting {}", args.relay_url))?;
    tracing::info!(?summary, "ingest finished");
    Ok(())
}
