use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use skyhose_sim::relay::{self, Faults, RelayConfig};
use skyhose_sim::{Network, SimConfig};

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
    /// Send ConsumerTooSlow and close a consumer more than this many events behind head.
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
}

pub async fn run(args: SimRelayArgs) -> anyhow::Result<()> {
    let sim = SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        ..SimConfig::default()
    };
    if let (Some(path), Some(total)) = (&args.truth_out, args.total) {
        let (sim, path) = (sim.clone(), path.clone());
        tokio::task::spawn_blocking(move || write_truth(sim, total, &path)).await??;
        if args.truth_only {
            return Ok(());
        }
    }
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
