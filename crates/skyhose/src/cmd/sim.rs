use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use skyhose_sim::hosts::{self, HostFaults, HostsConfig};
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::relay::{self, Faults, RelayConfig};
use skyhose_sim::{Network, NetworkFaults, SimConfig};

/// Options of `skyhose sim-relay`.
#[derive(Args, Debug)]
pub struct SimRelayArgs {
    /// Address to serve subscribeRepos on (loopback only in tests and benchmarks).
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:2470")]
    pub listen: SocketAddr,
    /// Seed of the synthetic network; the same seed and options give byte-identical frames.
    #[arg(long, env = "SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Accounts that exist from the start (more join over time).
    #[arg(long, env = "SIM_ACCOUNTS", default_value_t = 1000)]
    pub accounts: usize,
    /// Events generated per second; omit to generate as fast as possible.
    #[arg(long, env = "SIM_RATE")]
    pub rate: Option<f64>,
    /// Events generated at once on start before --rate applies, so that consumers
    /// resuming from a saved cursor find it in the window after a restart.
    #[arg(long, env = "SIM_BURST", default_value_t = 0)]
    pub burst: u64,
    /// Stop generating after this many events; the relay keeps serving them.
    #[arg(long, env = "SIM_TOTAL")]
    pub total: Option<u64>,
    /// Events retained for cursor replay; older cursors get OutdatedCursor.
    #[arg(long, env = "SIM_WINDOW", default_value_t = 1_000_000)]
    pub window: usize,
    /// Close every connection, without a close frame, after sending this many events.
    #[arg(long, env = "SIM_DROP_EVERY")]
    pub drop_every: Option<u64>,
    /// Probability per event of sending an extra malformed frame before it (0 to 1).
    #[arg(long, env = "SIM_MALFORMED_RATE", default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// Send ConsumerTooSlow and close a live consumer (one that had caught up)
    /// more than this many events behind head; replays from a cursor are
    /// served at the consumer's pace, as a relay serves them.
    #[arg(long, env = "SIM_TOO_SLOW_LAG")]
    pub too_slow_lag: Option<u64>,
    /// After this many events on a connection, send nothing for --stall-secs (socket stays open).
    #[arg(long, env = "SIM_STALL_AFTER")]
    pub stall_after: Option<u64>,
    /// Length of the stall set by --stall-after, in seconds.
    #[arg(long, env = "SIM_STALL_SECS", default_value_t = 30.0)]
    pub stall_secs: f64,
    /// Record every generated frame to this capture file.
    #[arg(long = "record", env = "SIM_RECORD", value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Serve the frames of this capture file instead of generating.
    #[arg(
        long = "replay",
        env = "SIM_REPLAY",
        value_name = "FILE",
        conflicts_with = "record"
    )]
    pub replay: Option<PathBuf>,
    /// Write the ground truth (JSON) of the first --total events to this file.
    #[arg(long, env = "SIM_TRUTH_OUT", value_name = "FILE", requires = "total")]
    pub truth_out: Option<PathBuf>,
    /// With --truth-out: write the truth and exit without serving.
    #[arg(long, env = "SIM_TRUTH_ONLY", requires = "truth_out")]
    pub truth_only: bool,
    /// Address of the simulated PLC directory serving the accounts' DID
    /// documents (give it to `serve --plc-url http://ADDR`).
    #[arg(long, env = "SIM_PLC_LISTEN", default_value = "127.0.0.1:2582")]
    pub plc_listen: SocketAddr,
    /// Do not serve the PLC directory.
    #[arg(long, env = "SIM_NO_PLC")]
    pub no_plc: bool,
    /// Commits each initial account makes before the firehose window opens
    /// (1-3 records each): a firehose-only index of such a network is incomplete.
    #[arg(long, env = "SIM_HISTORY_COMMITS", default_value_t = 0)]
    pub history_commits: usize,
    /// Probability per commit that its frame is signed with a key that is not the account's.
    #[arg(long, env = "SIM_BAD_SIGNATURE_RATE", default_value_t = 0.0)]
    pub bad_signature_rate: f64,
    /// Probability per #sync that the repo silently lost a record before it.
    #[arg(long, env = "SIM_SYNC_DIVERGENCE_RATE", default_value_t = 0.0)]
    pub sync_divergence_rate: f64,
    /// Probability per handle change that the #identity carries no handle.
    #[arg(long, env = "SIM_IDENTITY_WITHOUT_HANDLE_RATE", default_value_t = 0.0)]
    pub identity_without_handle_rate: f64,
    /// Simulated repo hosts (PDSes) serving listRepos, getRepo and
    /// getLatestCommit, each on its own port from --hosts-base-port + 1; the
    /// relay-like front serving listHosts is on --hosts-base-port. 0: none.
    #[arg(long, env = "SIM_HOSTS", default_value_t = 2)]
    pub hosts: usize,
    #[arg(long, env = "SIM_HOSTS_BASE_PORT", default_value_t = 2590)]
    pub hosts_base_port: u16,
    /// The first host answers this many requests with 429 and ratelimit-* headers.
    #[arg(long, env = "SIM_HOST_RATE_LIMITED_REQUESTS", default_value_t = 0)]
    pub host_rate_limited_requests: u64,
    /// One repo in N (chosen by DID) is served as a truncated CAR.
    #[arg(long, env = "SIM_HOST_TRUNCATED_CAR_EVERY")]
    pub host_truncated_car_every: Option<u64>,
    /// One repo in N (chosen by DID) is served with a commit signed by another key.
    #[arg(long, env = "SIM_HOST_BAD_SIGNATURE_EVERY")]
    pub host_bad_signature_every: Option<u64>,
    #[command(subcommand)]
    pub action: Option<SimRelayAction>,
}

#[derive(Subcommand, Debug)]
pub enum SimRelayAction {
    /// Print a service-auth token of a simulated account, for trying the API's
    /// viewer endpoints by hand (`--seed` and `--accounts` pick the network).
    MintToken(MintTokenArgs),
}

#[derive(Args, Debug)]
pub struct MintTokenArgs {
    /// The account's DID; by default the network's first account.
    #[arg(long)]
    pub did: Option<String>,
    /// The API's service DID (its `serve --service-did`).
    #[arg(long, default_value = "did:web:localhost")]
    pub aud: String,
    /// The XRPC method the token is for, e.g. app.bsky.feed.getTimeline.
    #[arg(long)]
    pub lxm: String,
    /// Lifetime of the token, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u64,
}

pub async fn run(args: SimRelayArgs) -> anyhow::Result<()> {
    let sim = SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        history_commits_per_account: args.history_commits,
        faults: NetworkFaults {
            bad_signature: args.bad_signature_rate,
            sync_divergence: args.sync_divergence_rate,
            identity_without_handle: args.identity_without_handle_rate,
        },
        ..SimConfig::default()
    };
    if let Some(SimRelayAction::MintToken(mint)) = &args.action {
        return mint_token(&sim, mint);
    }
    if let (Some(path), Some(total)) = (&args.truth_out, args.total) {
        let (sim, path) = (sim.clone(), path.clone());
        tokio::task::spawn_blocking(move || write_truth(sim, total, &path)).await??;
        if args.truth_only {
            return Ok(());
        }
    }
    let sim_config = sim.clone();
    let cfg = RelayConfig {
        listen: args.listen,
        sim,
        total: args.total,
        rate: args.rate,
        burst: args.burst,
        window: args.window,
        faults: Faults {
            drop_every: args.drop_every,
            malformed_rate: args.malformed_rate,
            too_slow_lag: args.too_slow_lag,
            stall_after: args.stall_after,
            stall_secs: args.stall_secs,
        },
        replay_file: args.replay,
        record_file: args.record,
    };
    let relay = relay::start(cfg)
        .await
        .with_context(|| format!("starting the relay on {}", args.listen))?;
    tracing::info!(url = %relay.subscribe_url(), "simulated relay listening");
    let hosts = match relay.network() {
        Some(network) if args.hosts > 0 => {
            let ip = args.listen.ip();
            let port = |i: usize| args.hosts_base_port.saturating_add(i as u16);
            let cfg = HostsConfig {
                listen: (1..=args.hosts)
                    .map(|i| SocketAddr::new(ip, port(i)))
                    .collect(),
                front: SocketAddr::new(ip, port(0)),
                faults: HostFaults {
                    rate_limited_requests: args.host_rate_limited_requests,
                    truncated_car_every: args.host_truncated_car_every,
                    truncated_car_repeats: None,
                    bad_signature_every: args.host_bad_signature_every,
                },
            };
            let hosts = hosts::start(cfg, network, sim_config.clone())
                .await
                .context("starting the simulated repo hosts")?;
            tracing::info!(hosts = ?hosts.urls(), front = %hosts.front_url(), "simulated repo hosts listening");
            Some(hosts)
        }
        _ => None,
    };
    let plc = if args.no_plc {
        None
    } else {
        let plc = plc::start(PlcConfig {
            listen: args.plc_listen,
            sim: sim_config,
            pds_endpoints: hosts.as_ref().map(|h| h.urls()).unwrap_or_default(),
        })
        .await
        .with_context(|| format!("starting the PLC directory on {}", args.plc_listen))?;
        tracing::info!(url = %plc.url(), "simulated PLC directory listening");
        Some(plc)
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    let (mut last_count, mut last_at) = (0u64, Instant::now());
    let mut reported_finish = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let stats = relay.stats();
                let rate = (stats.generated - last_count) as f64 / last_at.elapsed().as_secs_f64();
                (last_count, last_at) = (stats.generated, Instant::now());
                tracing::info!(generated = stats.generated, head = stats.head_seq, events_per_sec = rate as u64,
                    consumers = stats.consumers, connections = stats.connections, "progress");
                if stats.finished && !reported_finish {
                    reported_finish = true;
                    tracing::info!(head = stats.head_seq, "generation finished; still serving");
                }
            }
            signal = tokio::signal::ctrl_c() => {
                signal.context("waiting for ctrl-c")?;
                tracing::info!("shutting down");
                if let Some(plc) = plc {
                    plc.shutdown().await;
                }
                if let Some(hosts) = hosts {
                    hosts.shutdown().await;
                }
                relay.shutdown().await;
                return Ok(());
            }
        }
    }
}

fn write_truth(sim: SimConfig, total: u64, path: &std::path::Path) -> anyhow::Result<()> {
    let mut net = Network::new(sim);
    for _ in 0..total {
        net.next_event();
    }
    std::fs::write(path, net.truth().to_json())
        .with_context(|| format!("writing the ground truth to {}", path.display()))?;
    tracing::info!(events = total, path = %path.display(), "ground truth written");
    Ok(())
}

fn mint_token(sim: &SimConfig, args: &MintTokenArgs) -> anyhow::Result<()> {
    let accounts = plc::initial_accounts(sim);
    let did = match &args.did {
        Some(did) => {
            if !accounts.iter().any(|(d, _)| d == did) {
                tracing::warn!(did, "not one of the network's initial accounts: the simulated PLC directory will not know it");
            }
            did.clone()
        }
        None => accounts
            .first()
            .map(|(did, _)| did.clone())
            .context("the network has no accounts")?,
    };
    println!(
        "{}",
        plc::mint_service_auth(sim, &did, &args.aud, &args.lxm, args.ttl_secs)
    );
    tracing::info!(did, aud = %args.aud, lxm = %args.lxm, "service-auth token minted");
    Ok(())
}

/// The simulated network's account keys, derived from its seed and each DID
/// as its directory derives them. Unlike the directory, this also knows the
/// accounts that join while the network runs, so `run --relay sim` checks
/// every commit. Each key is derived once (a scalar multiplication).
pub struct SimKeys {
    sim: SimConfig,
    derived: std::sync::Mutex<std::collections::HashMap<String, skyhose_proto::crypto::PublicKey>>,
}

impl SimKeys {
    pub fn new(sim: SimConfig) -> Self {
        SimKeys {
            sim,
            derived: std::sync::Mutex::default(),
        }
    }
}

impl skyhose_identity::KeySource for SimKeys {
    fn key<'a>(&'a self, did: &'a str) -> skyhose_identity::KeyFuture<'a> {
        let mut derived = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        let key = derived
            .entry(did.to_owned())
            .or_insert_with(|| plc::proto_signing_key(&self.sim, did).public_key())
            .clone();
        Box::pin(std::future::ready(Ok(key)))
    }
}
