//! SIGKILL at random moments, many times in a row: of ingest, of the index
//! process, and of `run` (ingest, index and API in one process).

use super::report::Row;
use super::stage::{free_port, Ctx, Expect, Rng, Setup, Stage};

/// How long each killed process lives, in milliseconds (start-up included).
const INGEST_LIFE_MS: (u64, u64) = (150, 700);
const INDEX_LIFE_MS: (u64, u64) = (200, 900);
const RUN_LIFE_MS: (u64, u64) = (700, 2_500);

/// Relay rate during kill scenarios: events keep arriving through every kill.
const RATE: f64 = 2_000.0;

/// Enough events that the relay is still sending during the last kill.
fn total_for(kills: usize, mean_life_ms: u64) -> u64 {
    let secs = kills as f64 * mean_life_ms as f64 / 1000.0 + 2.0;
    (secs * RATE) as u64
}

pub async fn kill_ingest(ctx: &Ctx, seed: u64, kills: usize) -> anyhow::Result<Row> {
    let mean = (INGEST_LIFE_MS.0 + INGEST_LIFE_MS.1) / 2 + 50;
    let setup = Setup::new(ctx, "kill-ingest", seed, total_for(kills, mean), RATE);
    let mut stage = Stage::start(ctx, setup).await?;
    let mut rng = Rng::new(seed);
    let index = stage.spawn_index()?;
    for _ in 0..kills {
        let ingest = stage.spawn_ingest(&["--batch-max", "200"])?;
        tokio::time::sleep(rng.millis(INGEST_LIFE_MS.0, INGEST_LIFE_MS.1)).await;
        ingest.sigkill().await;
    }
    let last = stage.fault_end();
    let ingest = stage.spawn_ingest(&[])?;
    let faults = format!("{kills} SIGKILLs of ingest");
    stage
        .finish(vec![ingest, index], faults, last, Expect::Exact)
        .await
}

pub async fn kill_index(ctx: &Ctx, seed: u64, kills: usize) -> anyhow::Result<Row> {
    let mean = (INDEX_LIFE_MS.0 + INDEX_LIFE_MS.1) / 2 + 50;
    let setup = Setup::new(ctx, "kill-index", seed, total_for(kills, mean), RATE);
    let mut stage = Stage::start(ctx, setup).await?;
    let mut rng = Rng::new(seed);
    let ingest = stage.spawn_ingest(&[])?;
    for _ in 0..kills {
        let index = stage.spawn_index()?;
        tokio::time::sleep(rng.millis(INDEX_LIFE_MS.0, INDEX_LIFE_MS.1)).await;
        index.sigkill().await;
    }
    let last = stage.fault_end();
    let index = stage.spawn_index()?;
    let faults = format!("{kills} SIGKILLs of the index process");
    stage
        .finish(vec![ingest, index], faults, last, Expect::Exact)
        .await
}

pub async fn kill_run(ctx: &Ctx, seed: u64, kills: usize) -> anyhow::Result<Row> {
    let mean = (RUN_LIFE_MS.0 + RUN_LIFE_MS.1) / 2 + 100;
    let setup = Setup::new(ctx, "kill-run", seed, total_for(kills, mean), RATE);
    let mut stage = Stage::start(ctx, setup).await?;
    let mut rng = Rng::new(seed);
    for _ in 0..kills {
        let run = stage.spawn_run(free_port()?, &[])?;
        tokio::time::sleep(rng.millis(RUN_LIFE_MS.0, RUN_LIFE_MS.1)).await;
        run.sigkill().await;
    }
    let last = stage.fault_end();
    let run = stage.spawn_run(free_port()?, &[])?;
    let faults = format!("{kills} SIGKILLs of run");
    stage.finish(vec![run], faults, last, Expect::Exact).await
}
