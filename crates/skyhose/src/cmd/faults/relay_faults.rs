//! A misbehaving relay: it drops the connection often, stalls with the
//! socket open, sends malformed frames, answers an old cursor with
//! OutdatedCursor, and drops a live consumer that falls behind as too slow.

use std::time::Duration;

use anyhow::Context;
use redis::AsyncCommands;
use skyhose_sim::relay::Faults;

use super::report::Row;
use super::stage::{Ctx, Expect, Setup, Stage};

const RATE: f64 = 3_000.0;

/// Reconnections the relay saw beyond the first connection of each process.
fn reconnections(stage: &Stage, processes: u64) -> u64 {
    stage.relay.stats().connections.saturating_sub(processes)
}

/// One misbehaviour of the relay and how ingest is set up to meet it.
struct Case {
    scenario: &'static str,
    total: u64,
    /// `None`: the relay generates as fast as it can.
    rate: Option<f64>,
    faults: Faults,
    ingest_args: &'static [&'static str],
}

/// Ingest and index under the case's faults until the relay has sent
/// everything; `describe` words the faults given the reconnections seen.
async fn under_faults(
    ctx: &Ctx,
    seed: u64,
    case: Case,
    describe: impl Fn(u64) -> String,
) -> anyhow::Result<Row> {
    let mut setup = Setup::new(
        ctx,
        case.scenario,
        seed,
        case.total,
        case.rate.unwrap_or(RATE),
    );
    setup.rate = case.rate;
    setup.relay_faults = case.faults;
    let mut stage = Stage::start(ctx, setup).await?;
    let procs = vec![stage.spawn_ingest(case.ingest_args)?, stage.spawn_index()?];
    stage.relay.wait_for_head(case.total as i64).await;
    let last = stage.fault_end();
    // Count reconnections once everything is in: the last may come late.
    let _ = stage
        .wait_for_watermark(case.total as i64, Duration::from_secs(30))
        .await;
    let described = describe(reconnections(&stage, 1));
    stage.finish(procs, described, last, Expect::Exact).await
}

pub async fn drops(ctx: &Ctx, seed: u64, total: u64) -> anyhow::Result<Row> {
    let every = 250;
    let faults = Faults {
        drop_every: Some(every),
        ..Faults::default()
    };
    let case = Case {
        scenario: "relay-drop",
        total,
        rate: Some(RATE),
        faults,
        ingest_args: &["--backoff-cap", "200ms"],
    };
    under_faults(ctx, seed, case, |n| {
        format!("connection dropped every {every} events ({n} reconnects)")
    })
    .await
}

pub async fn stalls(ctx: &Ctx, seed: u64, total: u64) -> anyhow::Result<Row> {
    let faults = Faults {
        stall_after: Some(1_500),
        stall_secs: 5.0,
        ..Faults::default()
    };
    let case = Case {
        scenario: "relay-stall",
        total,
        rate: Some(RATE),
        faults,
        ingest_args: &["--stall-timeout", "1s", "--backoff-cap", "200ms"],
    };
    under_faults(ctx, seed, case, |n| {
        format!("5 s silences after 1,500 events per connection ({n} reconnects)")
    })
    .await
}

pub async fn malformed(ctx: &Ctx, seed: u64, total: u64) -> anyhow::Result<Row> {
    let faults = Faults {
        malformed_rate: 0.02,
        ..Faults::default()
    };
    let case = Case {
        scenario: "relay-malformed",
        total,
        rate: Some(RATE),
        faults,
        ingest_args: &[],
    };
    under_faults(ctx, seed, case, |_| {
        "a malformed frame before 2% of events".to_owned()
    })
    .await
}

/// Ingest is frozen (SIGSTOP) while the relay keeps producing, so it falls
/// further behind than the relay tolerates of a live consumer: on waking it
/// gets ConsumerTooSlow, reconnects from its cursor and replays the gap.
pub async fn too_slow(ctx: &Ctx, seed: u64, freezes: usize) -> anyhow::Result<Row> {
    const LAG: u64 = 500;
    const RUN: Duration = Duration::from_secs(1);
    // Long enough for the kernel's socket buffers on both ends (several MB
    // on loopback) to fill, after which the relay sees the consumer's lag.
    const FROZEN: Duration = Duration::from_secs(3);
    let rate = 8_000.0;
    let freezes = freezes.max(1);
    let total = ((RUN + FROZEN).as_secs_f64() * freezes as f64 + 1.0) * rate;
    let total = total as u64;
    let mut setup = Setup::new(ctx, "relay-too-slow", seed, total, rate);
    setup.relay_faults = Faults {
        too_slow_lag: Some(LAG),
        ..Faults::default()
    };
    let mut stage = Stage::start(ctx, setup).await?;
    let index = stage.spawn_index()?;
    let ingest = stage.spawn_ingest(&["--backoff-cap", "200ms"])?;
    for _ in 0..freezes {
        tokio::time::sleep(RUN).await;
        ingest.pause()?;
        tokio::time::sleep(FROZEN).await;
        ingest.resume()?;
    }
    stage.relay.wait_for_head(total as i64).await;
    let last = stage.fault_end();
    let _ = stage
        .wait_for_watermark(total as i64, Duration::from_secs(30))
        .await;
    let cut = reconnections(&stage, 1);
    let faults = format!(
        "ingest frozen {freezes} time(s) for {} s against a {LAG}-event limit ({cut} reconnects after ConsumerTooSlow)",
        FROZEN.as_secs()
    );
    let mut row = stage
        .finish(vec![ingest, index], faults, last, Expect::Exact)
        .await?;
    if cut == 0 {
        // Finished first all the same, so the scenario's keys and database
        // are cleaned up.
        let never = "the relay never dropped the frozen consumer as too slow";
        row.problem = Some(match row.problem.take() {
            Some(other) => format!("{never}; {other}"),
            None => never.to_owned(),
        });
    }
    Ok(row)
}

/// Ingest is away longer than the relay's replay window: on its return the
/// relay says OutdatedCursor and serves from its oldest event. What it no
/// longer had is lost by protocol; the check is that nothing else is.
pub async fn outdated_cursor(ctx: &Ctx, seed: u64, total: u64) -> anyhow::Result<Row> {
    let window = 1_000;
    let mut setup = Setup::new(ctx, "relay-outdated-cursor", seed, total, RATE);
    setup.window = window;
    let mut stage = Stage::start(ctx, setup).await?;
    let index = stage.spawn_index()?;
    let ingest = stage.spawn_ingest(&[])?;
    stage.relay.wait_for_head(total as i64 / 4).await;
    ingest.sigkill().await;
    let cursor = saved_cursor(&stage).await?;
    // Away until the relay's window has moved past the cursor, with margin.
    stage
        .relay
        .wait_for_head(cursor + window as i64 + RATE as i64 / 2)
        .await;
    let ingest = stage.spawn_ingest(&[])?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = stage.fault_end();
    let faults = format!("ingest away past the relay's {window}-event window");
    stage
        .finish(
            vec![ingest, index],
            faults,
            last,
            Expect::RelayGapAfter { cursor },
        )
        .await
}

async fn saved_cursor(stage: &Stage) -> anyhow::Result<i64> {
    let client = skyhose_connect::redis_client(&stage.redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let cursor: Option<i64> = conn.get(&stage.keys.cursor).await?;
    cursor.context("ingest saved no cursor before it was killed")
}
