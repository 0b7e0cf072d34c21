//! The engines going away under a running pipeline: Redis restarted (it
//! keeps nothing on disk, so its data goes too), Redis's keys wiped, and
//! PostgreSQL stopped without a checkpoint mid-batch. Restarts use private
//! servers on their own ports, so the shared ones are never disturbed.

use std::path::Path;

use anyhow::Context;

use super::report::Row;
use super::stage::{delete_keys, free_port, Ctx, Expect, Rng, Setup, Stage};
use crate::services::{self, Private};

const RATE: f64 = 2_000.0;
/// Time between outages: long enough for the pipeline to be busy again.
const BETWEEN_MS: (u64, u64) = (1_000, 2_500);
/// How long an engine stays down.
const DOWN_MS: (u64, u64) = (200, 1_500);
/// How long the index is held still before Redis loses its data, so the
/// stream holds a backlog that nothing has read: the case where the resume
/// point matters.
const BACKLOG_MS: (u64, u64) = (300, 1_200);

fn total_for(outages: usize) -> u64 {
    let secs = outages as f64 * 3.5 + 1.0;
    (secs * RATE) as u64
}

/// A private Redis on a free port, data kept nowhere.
fn private_redis(dir: &Path) -> anyhow::Result<(Private, u16)> {
    let port = free_port()?;
    let private = services::ensure_redis("127.0.0.1", port, dir)?
        .context("a Redis already answers on the port chosen for the private one")?;
    Ok((private, port))
}

pub async fn redis_restart(ctx: &Ctx, seed: u64, restarts: usize) -> anyhow::Result<Row> {
    let dir = ctx.work_dir.join("redis-restart");
    let (mut redis, port) = private_redis(&dir)?;
    let mut setup = Setup::new(ctx, "redis-restart", seed, total_for(restarts), RATE);
    setup.redis_url = format!("redis://127.0.0.1:{port}");
    let outcome = async {
        let mut stage = Stage::start(ctx, setup).await?;
        let mut rng = Rng::new(seed);
        let (ingest, index) = (stage.spawn_ingest(&[])?, stage.spawn_index()?);
        for _ in 0..restarts {
            tokio::time::sleep(rng.millis(BETWEEN_MS.0, BETWEEN_MS.1)).await;
            index.pause()?;
            tokio::time::sleep(rng.millis(BACKLOG_MS.0, BACKLOG_MS.1)).await;
            redis.stop_abruptly()?;
            index.resume()?;
            tokio::time::sleep(rng.millis(DOWN_MS.0, DOWN_MS.1)).await;
            redis = services::ensure_redis("127.0.0.1", port, &dir)?
                .context("something else took the private Redis's port")?;
        }
        let procs = vec![ingest, index];
        let last = stage.fault_end();
        let faults =
            format!("{restarts} restarts of Redis with a backlog unread (data lost each time)");
        stage.finish(procs, faults, last, Expect::Exact).await
    }
    .await;
    redis.stop();
    outcome
}

pub async fn redis_wipe(ctx: &Ctx, seed: u64, wipes: usize) -> anyhow::Result<Row> {
    let setup = Setup::new(ctx, "redis-wipe", seed, total_for(wipes), RATE);
    let mut stage = Stage::start(ctx, setup).await?;
    let mut rng = Rng::new(seed);
    let (ingest, index) = (stage.spawn_ingest(&[])?, stage.spawn_index()?);
    for _ in 0..wipes {
        tokio::time::sleep(rng.millis(BETWEEN_MS.0, BETWEEN_MS.1)).await;
        index.pause()?;
        tokio::time::sleep(rng.millis(BACKLOG_MS.0, BACKLOG_MS.1)).await;
        delete_keys(&stage.redis_url, &stage.keys).await;
        index.resume()?;
    }
    let procs = vec![ingest, index];
    let last = stage.fault_end();
    let faults = format!("{wipes} wipes of the stream, cursor and group with a backlog unread");
    stage.finish(procs, faults, last, Expect::Exact).await
}

pub async fn postgres_restart(ctx: &Ctx, seed: u64, restarts: usize) -> anyhow::Result<Row> {
    let dir = ctx.work_dir.join("postgres-restart");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_port()?;
    let mut postgres = services::ensure_postgres("127.0.0.1", port, &dir)?
        .context("a PostgreSQL already answers on the port chosen for the private one")?;
    let mut setup = Setup::new(ctx, "postgres-restart", seed, total_for(restarts), RATE);
    setup.postgres = format!("postgres://postgres@127.0.0.1:{port}");
    let outcome = async {
        let mut stage = Stage::start(ctx, setup).await?;
        let mut rng = Rng::new(seed);
        let procs = vec![stage.spawn_ingest(&[])?, stage.spawn_index()?];
        for _ in 0..restarts {
            tokio::time::sleep(rng.millis(BETWEEN_MS.0, BETWEEN_MS.1)).await;
            postgres.stop_abruptly()?;
            tokio::time::sleep(rng.millis(DOWN_MS.0, DOWN_MS.1)).await;
            postgres = services::ensure_postgres("127.0.0.1", port, &dir)?
                .context("something else took the private PostgreSQL's port")?;
        }
        let last = stage.fault_end();
        let faults = format!("{restarts} crashes of PostgreSQL (immediate stop) mid-batch");
        stage.finish(procs, faults, last, Expect::Exact).await
    }
    .await;
    postgres.stop();
    outcome
}
