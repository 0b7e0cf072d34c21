//! `skyhose run` and `skyhose demo`: ingest, index workers and the API in one
//! process, with one `/metrics` and one shutdown sequence.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use skyhose_identity::KeySource;
use skyhose_index::{CancellationToken, IndexConfig};
use skyhose_ingest::{IngestConfig, RelayClock, VerifyConfig};
use skyhose_sim::relay::{self, RelayConfig, RelayHandle};
use skyhose_sim::SimConfig;

use super::index::{cancel_on_signal, DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL};
use super::serve::ApiArgs;
use crate::config::mask::mask_url;
use crate::services::{self, Private};

/// How long shutdown waits for the index to catch up with what ingest wrote.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// Options of `skyhose run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Relay to subscribe to, or `sim` for the built-in simulated relay.
    #[arg(
        long = "relay",
        env = "RELAY_URL",
        default_value = "wss://bsky.network",
        value_parser = crate::config::check::relay_or_sim
    )]
    pub relay_url: String,
    /// PostgreSQL database of the index; created if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
    /// Start private Redis/PostgreSQL under --data-dir when nothing answers
    /// at the configured local addresses (throwaway Redis, trust-auth
    /// PostgreSQL on 127.0.0.1 only). Without it, an engine that does not
    /// answer is an error: a production restart during a database outage
    /// must not index into a fresh private database.
    #[arg(long, env = "SKYHOSE_START_ENGINES")]
    pub start_engines: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Options of `skyhose demo`: `run` fed by the simulated relay, in its own database.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// PostgreSQL database of the index; created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/skyhose_demo",
        value_parser = crate::config::check::postgres_url
    )]
    pub database_url: String,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// What `run` and `demo` share.
#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// Redis holding the stream, the cursor and the consumer group.
    #[arg(long = "redis", env = "REDIS_URL", default_value = DEFAULT_REDIS_URL, value_parser = crate::config::check::redis_url)]
    pub redis_url: String,
    /// Index worker tasks.
    #[arg(long, env = "INDEX_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Resolve accounts' identities and keep only verified handles (with the
    /// simulated network, against its own directory).
    #[arg(long, env = "RESOLVE_IDENTITIES")]
    pub resolve_identities: bool,
    // On a real relay the checks use --plc-url and are off unless asked
    // for, since that flag always has a default here.
    #[command(flatten)]
    pub commit_checks: super::ingest::CommitChecks,
    /// Where private Redis/PostgreSQL instances keep their data (`demo`, or
    /// `run --start-engines`) when none is running at the configured
    /// local address.
    #[arg(long, env = "SKYHOSE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub sim: SimArgs,
    #[command(flatten)]
    pub backfill: super::index::LiveBackfillArgs,
}

/// Redis keys shared by ingest and index.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Stream that ingest appends to and the index reads.
    #[arg(long, env = "REDIS_STREAM_KEY", default_value = skyhose_ingest::config::DEFAULT_STREAM_KEY)]
    pub stream_key: String,
    /// Key holding the seq of the last event in the stream.
    #[arg(long, env = "REDIS_CURSOR_KEY", default_value = skyhose_ingest::config::DEFAULT_CURSOR_KEY)]
    pub cursor_key: String,
    /// Stream length at which ingest pauses until the index catches up
    /// (entries are trimmed only once every group has read them).
    #[arg(long, env = "REDIS_MAX_STREAM_LEN", default_value_t = skyhose_ingest::config::DEFAULT_MAX_STREAM_LEN)]
    pub max_stream_len: u64,
    /// Dashboard status key (JSON, expires when ingest stops updating it).
    #[arg(long, env = "REDIS_STATUS_KEY", default_value = skyhose_ingest::config::DEFAULT_STATUS_KEY)]
    pub status_key: String,
    /// Stream receiving entries the index cannot apply, with the reason.
    #[arg(long, env = "REDIS_DEAD_LETTER_KEY", default_value = skyhose_index::DEFAULT_DEAD_LETTER_KEY)]
    pub dead_letter_key: String,
}

/// Options of the built-in simulated relay (used with `--relay sim` and `demo`).
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Simulated events per second.
    #[arg(long = "sim-rate", env = "SIM_RATE", default_value_t = 500.0)]
    pub rate: f64,
    /// Accounts of the simulated network.
    #[arg(long = "sim-accounts", env = "SIM_ACCOUNTS", default_value_t = 2000)]
    pub accounts: usize,
    /// Seed of the simulated network.
    #[arg(long = "sim-seed", env = "SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Simulated repo hosts (PDSes) serving the network's repos on loopback;
    /// with any, a backfill beside the index loads every repo from them, so
    /// the index ends equal to the whole network. 0: none.
    #[arg(long = "sim-hosts", env = "SIM_HOSTS", default_value_t = 0)]
    pub hosts: usize,
    /// Commits each initial account makes before the firehose starts, which
    /// only a backfill from the hosts can index.
    #[arg(
        long = "sim-history-commits",
        env = "SIM_HISTORY_COMMITS",
        default_value_t = 0
    )]
    pub history_commits: usize,
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    run(RunArgs {
        relay_url: "sim".into(),
        database_url: args.database_url,
        start_engines: true,
        pipeline: args.pipeline,
    })
    .await
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.pipeline.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let privates = start_services(&args)?;
    let result = run_pipeline(&args).await;
    for private in privates.iter().rev() {
        tracing::info!("stopping the {}", private.describe());
        private.stop();
    }
    result
}

/// The configured engines, or private ones where allowed and nothing answers.
fn start_services(args: &RunArgs) -> anyhow::Result<Vec<Private>> {
    let redis = host_port(&args.pipeline.redis_url, 6379).context("--redis")?;
    let postgres = host_port(&args.database_url, 5432).context("--database-url")?;
    if !args.start_engines {
        let down: Vec<String> = [
            ("Redis", &redis, "--redis / REDIS_URL"),
            ("PostgreSQL", &postgres, "--database-url / DATABASE_URL"),
        ]
        .into_iter()
        .filter(|(_, (host, port), _)| !services::listening(host, *port))
        .map(|(engine, (host, port), flag)| format!("{engine} at {host}:{port} ({flag})"))
        .collect();
        if !down.is_empty() {
            bail!(
                "not answering: {}. `run` uses the configured engines only; start them, \
                 or pass --start-engines to start private ones under --data-dir",
                down.join(", ")
            );
        }
        return Ok(Vec::new());
    }
    let mut privates = Vec::new();
    let (host, port) = redis;
    if let Some(p) = services::ensure_redis(&host, port, &args.pipeline.data_dir)? {
        tracing::info!("started a {}", p.describe());
        privates.push(p);
    }
    let (host, port) = postgres;
    match services::ensure_postgres(&host, port, &args.pipeline.data_dir) {
        Ok(Some(p)) => {
            tracing::info!("started a {}", p.describe());
            privates.push(p);
        }
        Ok(None) => {}
        Err(e) => {
            for p in privates.iter().rev() {
                p.stop();
            }
            return Err(e);
        }
    }
    Ok(privates)
}

/// Host and port of a `scheme://[user@]host[:port]/...` URL.
fn host_port(url: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .with_context(|| format!("{url:?} is not a URL"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !port.ends_with(']') => {
            let port = port
                .parse()
                .with_context(|| format!("port {port:?} in {url:?}"))?;
            Ok((host.to_owned(), port))
        }
        _ => Ok((host_port.to_owned(), default_port)),
    }
}

async fn run_pipeline(args: &RunArgs) -> anyhow::Result<()> {
    skyhose_index::ensure_database(&args.database_url)
        .await
        .with_context(|| format!("creating the database of {}", mask_url(&args.database_url)))?;
    let pool =
        skyhose_index::connect_pool(&args.database_url, 2).context("connecting to PostgreSQL")?;
    let report = skyhose_index::migrate(&pool).await.context("migrating")?;
    tracing::info!(applied = ?report.applied, current = report.current, "schema ready");
    let fallback_cursor = skyhose_index::resume_seq(&pool)
        .await
        .context("reading the index watermark")?;

    let sim_relay = if args.relay_url == "sim" {
        Some(start_sim_relay(args, fallback_cursor).await?)
    } else {
        None
    };
    // A fresh pipeline on the simulated relay reads it from its first event;
    // on a real relay it starts at the live tail.
    let fallback_cursor = fallback_cursor.or(sim_relay.as_ref().map(|_| 0));
    let relay_url = match &sim_relay {
        Some(relay) => relay.url(),
        None => args.relay_url.clone(),
    };

    let ingest_cfg = IngestConfig {
        relay_url: relay_url.clone(),
        redis_url: args.pipeline.redis_url.clone(),
        stream_key: args.pipeline.keys.stream_key.clone(),
        cursor_key: args.pipeline.keys.cursor_key.clone(),
        status_key: args.pipeline.keys.status_key.clone(),
        max_stream_len: args.pipeline.keys.max_stream_len,
        fallback_cursor,
        // The API serves the process's one `/metrics`.
        metrics_listen: None,
        // The simulated network's clock starts in 2024: how far behind the
        // relay ingest is counts from its newest event, not from now.
        relay_clock: sim_relay
            .as_ref()
            .map(|relay| RelayClock::new(relay.head_clock())),
        verify: commit_checks(args, sim_relay.is_some())?,
        ..IngestConfig::default()
    };
    let mut index_cfg = IndexConfig::new(&args.pipeline.redis_url, &args.database_url);
    index_cfg.workers = args.pipeline.workers;
    // One name per host, the same across restarts: a `run` that crashed left
    // entries pending under it, and its successor finishes them first instead
    // of leaving them until another consumer may claim them (30 s idle).
    index_cfg.consumer = format!("run-{}", super::index::host_name());
    index_cfg.stream_key = args.pipeline.keys.stream_key.clone();
    index_cfg.dead_letter_key = args.pipeline.keys.dead_letter_key.clone();
    if args.pipeline.resolve_identities {
        index_cfg.identity = Some(args.pipeline.api.identity.config()?);
    }

    let metrics = skyhose_api::install_metrics_recorder().map_err(anyhow::Error::msg)?;
    let mut api_cfg = args.pipeline.api.config(&args.database_url)?;
    let sim_hosts = match sim_relay.as_ref().and_then(RelayHandle::network) {
        Some(network) if args.pipeline.sim.hosts > 0 => {
            let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let hosts = skyhose_sim::hosts::start(
                skyhose_sim::hosts::HostsConfig {
                    listen: vec![any; args.pipeline.sim.hosts],
                    front: any,
                    faults: Default::default(),
                },
                network,
                sim_config(args),
            )
            .await
            .context("starting the simulated repo hosts")?;
            tracing::info!(hosts = ?hosts.urls(), front = %hosts.front_url(), "simulated repo hosts running");
            Some(hosts)
        }
        _ => None,
    };
    let mut backfill_cfg = args
        .pipeline
        .backfill
        .config(&args.database_url, args.pipeline.api.identity.config()?);
    // The simulated network's viewers resolve through its own PLC directory.
    let sim_plc = match &sim_relay {
        Some(_) => {
            let plc = skyhose_sim::plc::start(skyhose_sim::plc::PlcConfig {
                sim: sim_config(args),
                pds_endpoints: sim_hosts.as_ref().map(|h| h.urls()).unwrap_or_default(),
                ..Default::default()
            })
            .await
            .context("starting the simulated PLC directory")?;
            if let Some(hosts) = &sim_hosts {
                // Repos come from the simulated hosts, keys and hosts from
                // the simulated directory.
                let mut backfill = super::index::LiveBackfillArgs {
                    sources: vec![hosts.front_url()],
                    concurrency: args.pipeline.backfill.concurrency,
                };
                if !args.pipeline.backfill.sources.is_empty() {
                    backfill.sources = args.pipeline.backfill.sources.clone();
                }
                backfill_cfg = backfill.config(
                    &args.database_url,
                    skyhose_identity::IdentityConfig::loopback(plc.url()),
                );
            }
            tracing::info!(url = %plc.url(), "simulated PLC directory running (viewer tokens: skyhose sim-relay mint-token)");
            api_cfg.plc_url = plc.url();
            api_cfg.allow_loopback_identity = true;
            // The directory is also the accounts' handle host, so with
            // --resolve-identities the demo's handles are verified both ways
            // on loopback. It is off by default: the directory knows each
            // account's first handle only, and the demo's ground-truth checks
            // take handles from the events.
            if args.pipeline.resolve_identities {
                let mut identity = skyhose_identity::IdentityConfig::loopback(plc.url());
                identity.handle_resolver = Some(plc.url());
                index_cfg.identity = Some(identity);
            }
            Some(plc)
        }
        None => None,
    };
    let labels = super::labels::RunLabels::start(
        &args.pipeline.api.labelers.labelers,
        &args.database_url,
        match &sim_plc {
            Some(plc) => skyhose_identity::IdentityConfig::loopback(plc.url()),
            None => args.pipeline.api.identity.config()?,
        },
        sim_plc.as_ref().map(|plc| (plc, sim_config(args))),
    )
    .await?;
    api_cfg.labelers = labels.labelers().to_vec();
    let api_pool =
        skyhose_api::connect_pool(&api_cfg).context("connecting the API to PostgreSQL")?;
    let api_url = format!("http://{}", api_cfg.listen);
    let listener = tokio::net::TcpListener::bind(api_cfg.listen)
        .await
        .with_context(|| format!("binding the API to {} (--listen)", api_cfg.listen))?;

    index_cfg.repo_sync = backfill_cfg.is_some();
    let stop = CancellationToken::new();
    cancel_on_signal(stop.clone());
    let ingest_stop = CancellationToken::new();
    let index_stop = CancellationToken::new();
    let api_stop = CancellationToken::new();
    let mut ingest = tokio::spawn(super::ingest::run_resuming(
        ingest_cfg,
        Some(args.database_url.clone()),
        ingest_stop.clone(),
    ));
    let mut index = tokio::spawn(skyhose_index::run(index_cfg.clone(), index_stop.clone()));
    let backfill = backfill_cfg.map(|cfg| {
        let stop = CancellationToken::new();
        (super::index::spawn_backfill(cfg, stop.clone()), stop)
    });
    let api = tokio::spawn(skyhose_api::serve_on(
        listener,
        skyhose_api::AppState::new(api_pool, api_cfg, Some(metrics)),
        api_stop.clone(),
    ));
    tracing::info!(
        relay = %relay_url,
        redis = %mask_url(&args.pipeline.redis_url),
        api = %format!("{api_url}/xrpc/app.bsky.actor.getProfile?actor=..."),
        dashboard = %format!("{api_url}/"),
        metrics = %format!("{api_url}/metrics"),
        "pipeline running; Ctrl-C stops it"
    );

    // Whichever part ends first ends the run; the rest stops in pipeline order.
    let early = tokio::select! {
        _ = stop.cancelled() => None,
        r = &mut ingest => Some(("ingest", r.map(|r| r.map(|_| ())))),
        r = &mut index => Some(("index", r.map(|r| r.map(|_| ()).map_err(anyhow::Error::from)))),
    };
    let ended = early.as_ref().map(|(part, _)| *part);
    let mut failure = None;
    if let Some((part, outcome)) = early {
        match outcome {
            Ok(Ok(())) => tracing::warn!("{part} stopped on its own"),
            Ok(Err(e)) => failure = Some(e.context(format!("{part} failed"))),
            Err(e) => failure = Some(anyhow::Error::from(e).context(format!("{part} panicked"))),
        }
    }

    tracing::info!("stopping ingest: no more frames are read; the last batch and cursor are saved");
    ingest_stop.cancel();
    if ended != Some("ingest") {
        match ingest.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "ingest stopped with an error"),
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(error = %e, "ingest task failed"),
        }
    }
    tracing::info!("stopping index workers: in-flight batches commit and are acknowledged");
    index_stop.cancel();
    if ended != Some("index") {
        match index.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "index stopped with an error"),
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(error = %e, "index task failed"),
        }
    }
    tracing::info!("stopping the backfill: repos being loaded finish first");
    super::index::stop_backfill(backfill).await;
    if failure.is_none() {
        drain_index(index_cfg).await;
    }
    tracing::info!("stopping labels: the last batch and its cursor are saved");
    labels.stop().await;
    tracing::info!("stopping the API: requests in flight are answered first");
    api_stop.cancel();
    match api.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the API stopped with an error"),
        Err(e) => tracing::error!(error = %e, "API task failed"),
    }
    if let Some(relay) = sim_relay {
        tracing::info!("stopping the simulated relay");
        relay.shutdown().await;
    }
    if let Some(plc) = sim_plc {
        plc.shutdown().await;
    }
    if let Some(hosts) = sim_hosts {
        hosts.shutdown().await;
    }
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// Indexes what ingest wrote before it stopped, so the watermark in PostgreSQL
/// reaches the saved cursor; bounded, because other consumers of a shared group
/// may hold entries this process cannot finish.
async fn drain_index(mut cfg: IndexConfig) {
    cfg.exit_when_drained = true;
    let stop = CancellationToken::new();
    let mut drain = tokio::spawn(skyhose_index::run(cfg, stop.clone()));
    tracing::info!("indexing what is left in the stream (at most {DRAIN_LIMIT:?})");
    let outcome = tokio::select! {
        r = &mut drain => r,
        _ = tokio::time::sleep(DRAIN_LIMIT) => {
            tracing::warn!("the stream did not drain in {DRAIN_LIMIT:?}; the rest is indexed on the next start");
            stop.cancel();
            drain.await
        }
    };
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "draining the stream failed"),
        Err(e) => tracing::error!(error = %e, "draining task failed"),
    }
}

/// The commit checks of ingest: on with the simulated relay (its accounts'
/// keys derived as its directory derives them), else only when asked for,
/// with keys from the DID documents.
fn commit_checks(args: &RunArgs, sim: bool) -> anyhow::Result<Option<VerifyConfig>> {
    let pipeline = &args.pipeline;
    if !pipeline.commit_checks.wanted(sim) {
        return Ok(None);
    }
    let keys: Arc<dyn KeySource> = match sim {
        true => Arc::new(super::sim::SimKeys::new(sim_config(args))),
        false => Arc::new(skyhose_identity::Resolver::new(
            pipeline.api.identity.config()?,
        )),
    };
    Ok(Some(VerifyConfig::new(keys)))
}

/// The simulated relay restarts from seq 1 with each process; it generates up to the
/// saved cursor at once so ingest's resume point is inside its replay window again.
/// `indexed`: the seq committed in PostgreSQL. The relay regenerates up to
/// the later of it and the cursor saved in Redis, so a restarted demo finds
/// its resume point in the relay's window even after Redis lost its data.
async fn start_sim_relay(args: &RunArgs, indexed: Option<i64>) -> anyhow::Result<RelayHandle> {
    let saved = saved_cursor(&args.pipeline.redis_url, &args.pipeline.keys.cursor_key)
        .await
        .unwrap_or(0)
        .max(indexed.unwrap_or(0))
        .max(0) as u64;
    let cfg = RelayConfig {
        sim: sim_config(args),
        rate: Some(args.pipeline.sim.rate),
        burst: saved,
        window: (saved as usize).saturating_add(100_000),
        ..RelayConfig::default()
    };
    if saved > 0 {
        tracing::info!(
            saved_cursor = saved,
            "regenerating the simulated network up to the saved cursor"
        );
    }
    let relay = relay::start(cfg)
        .await
        .context("starting the simulated relay")?;
    if saved > 0 {
        relay.wait_for_head(saved as i64).await;
    }
    tracing::info!(url = %relay.subscribe_url(), rate = args.pipeline.sim.rate, "simulated relay running");
    Ok(relay)
}

fn sim_config(args: &RunArgs) -> SimConfig {
    SimConfig {
        seed: args.pipeline.sim.seed,
        accounts: args.pipeline.sim.accounts,
        history_commits_per_account: args.pipeline.sim.history_commits,
        ..SimConfig::default()
    }
}

async fn saved_cursor(redis_url: &str, cursor_key: &str) -> Option<i64> {
    let client = skyhose_connect::redis_client(redis_url).ok()?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    redis::cmd("GET")
        .arg(cursor_key)
        .query_async::<Option<i64>>(&mut conn)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::host_port;

    /// With nothing answering, `run` names both engines and starts nothing.
    #[test]
    fn engines_that_do_not_answer_are_named_and_nothing_is_created() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: super::RunArgs,
        }
        let data_dir =
            std::env::temp_dir().join(format!("skyhose-run-test-{}", std::process::id()));
        let data_dir_arg = data_dir.display().to_string();
        // Ports 1 and 2 on loopback: nothing listens there.
        let cli = Cli::try_parse_from([
            "run",
            "--redis",
            "redis://127.0.0.1:1",
            "--database-url",
            "postgres://postgres@127.0.0.1:2/skyhose",
            "--data-dir",
            &data_dir_arg,
        ])
        .unwrap();
        let message = match super::start_services(&cli.run) {
            Ok(_) => panic!("started with no engines answering"),
            Err(e) => format!("{e:#}"),
        };
        assert!(message.contains("Redis at 127.0.0.1:1"), "{message}");
        assert!(message.contains("PostgreSQL at 127.0.0.1:2"), "{message}");
        assert!(!data_dir.exists(), "{} was created", data_dir.display());
    }

    #[test]
    fn host_and_port_of_service_urls() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/skyhose", 1).unwrap(),
            ("127.0.0.1".into(), 5432)
        );
        assert_eq!(
            host_port("redis://localhost", 6379).unwrap(),
            ("localhost".into(), 6379)
        );
        assert!(host_port("nonsense", 1).is_err());
    }
}
