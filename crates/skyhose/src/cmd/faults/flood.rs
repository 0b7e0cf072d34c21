//! The relay at full speed while the API is under load: ingest must hold
//! back (the stream is bounded) rather than grow without limit, memory stays
//! bounded, and the index's lag comes back to zero after the flood.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use skyhose_index::RowExt;

use super::report::Row;
use super::stage::{free_port, Ctx, Expect, FaultEnd, Setup, Stage};
use crate::cmd::bench_api::load;

/// The pipeline process's peak RSS must stay under this, whatever the flood's size.
const RSS_BOUND_KB: u64 = 512 * 1024;
/// A short stream bound makes the backpressure path part of the flood.
const MAX_STREAM_LEN: u64 = 20_000;
const API_CONNECTIONS: usize = 8;

/// Requests answered and their latencies, across the whole flood.
#[derive(Default)]
struct ApiTotals {
    ok: u64,
    errors: u64,
    busy: Duration,
    latencies_us: Vec<u32>,
    sample_error: Option<String>,
}

impl ApiTotals {
    fn p99_ms(&mut self) -> f64 {
        self.latencies_us.sort_unstable();
        let Some(last) = self.latencies_us.len().checked_sub(1) else {
            return 0.0;
        };
        let i = (last as f64 * 0.99).round() as usize;
        self.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

pub async fn flood(ctx: &Ctx, seed: u64, total: u64) -> anyhow::Result<Row> {
    let mut setup = Setup::new(ctx, "flood", seed, total, 0.0);
    setup.rate = None;
    setup.sim.accounts = 2_000;
    let mut stage = Stage::start(ctx, setup).await?;
    let started = Instant::now();
    let port = free_port()?;
    let max_len = MAX_STREAM_LEN.to_string();
    let run = stage.spawn_run(port, &["--max-stream-len", &max_len])?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let paths = Arc::new(api_paths(&stage).await?);

    let mut api = ApiTotals::default();
    let (mut max_lag, mut max_stream) = (0i64, 0u64);
    let mut flood_end: Option<FaultEnd> = None;
    let deadline = Instant::now() + ctx.catch_up;
    loop {
        let slice = load(addr, paths.clone(), API_CONNECTIONS, Duration::from_secs(1)).await;
        api.ok += slice.ok;
        api.errors += slice.errors;
        api.busy += slice.elapsed;
        api.latencies_us.extend(slice.latencies_us);
        api.sample_error = api.sample_error.or(slice.sample_error);
        let stats = stage.relay.stats();
        let watermark = stage.watermark().await.unwrap_or(0);
        max_lag = max_lag.max(stats.head_seq - watermark);
        max_stream = max_stream.max(stream_len(&stage).await);
        if stats.finished && flood_end.is_none() {
            flood_end = Some(stage.fault_end());
        }
        if (stats.finished && watermark >= stats.head_seq) || Instant::now() >= deadline {
            break;
        }
    }
    let generated_in = flood_end.map_or(started.elapsed(), |end| end.at - started);
    let last = flood_end.unwrap_or_else(|| stage.fault_end());
    let rate = api.ok as f64 / api.busy.as_secs_f64().max(1e-9);
    let errors = match (&api.sample_error, api.errors) {
        (Some(sample), n) if n > 0 => {
            // Quoted in a Markdown code span: no backticks inside.
            let sample: String = sample.chars().take(60).filter(|c| *c != '`').collect();
            format!("{n} errors, e.g. `{sample}`")
        }
        (_, n) => format!("{n} errors"),
    };
    let faults = format!(
        "relay at full speed ({total} events sent in {:.0} s); API {rate:.0} req/s, p99 {:.0} ms, \
         {errors}; lag up to {max_lag} events, stream up to {max_stream} entries",
        generated_in.as_secs_f64(),
        api.p99_ms(),
    );
    let mut row = stage.finish(vec![run], faults, last, Expect::Exact).await?;
    let mut problems: Vec<String> = row.problem.take().into_iter().collect();
    if row.peak_rss_kb > RSS_BOUND_KB {
        problems.push(format!(
            "peak RSS {} MB is over the {} MB bound",
            row.peak_rss_kb / 1024,
            RSS_BOUND_KB / 1024
        ));
    }
    if api.ok == 0 {
        problems.push(format!(
            "the API answered no request during the flood ({})",
            api.sample_error.as_deref().unwrap_or("no error sample")
        ));
    }
    if max_stream > MAX_STREAM_LEN * 2 {
        problems.push(format!(
            "the stream grew to {max_stream} entries, past twice its bound of {MAX_STREAM_LEN}"
        ));
    }
    row.problem = (!problems.is_empty()).then(|| problems.join("; "));
    Ok(row)
}

/// getProfile and getAuthorFeed of actors indexed early in the flood.
async fn api_paths(stage: &Stage) -> anyhow::Result<Vec<String>> {
    stage
        .wait_for_watermark(500, Duration::from_secs(60))
        .await
        .context("waiting for the first actors to be indexed")?;
    let pool = skyhose_index::connect_pool(&stage.database_url, 1)?;
    let client = pool
        .get()
        .await
        .context("connecting to the scenario database")?;
    let dids: Vec<String> = client
        .query(
            "SELECT did FROM actors WHERE indexed AND status = 'active' ORDER BY did LIMIT 500",
            &[],
        )
        .await
        .context("listing indexed actors")?
        .iter()
        .map(|row| row.col("did", "listing indexed actors"))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!dids.is_empty(), "no actor is indexed after 500 events");
    let enc = |s: &str| s.replace(':', "%3A");
    Ok(dids
        .iter()
        .flat_map(|did| {
            [
                format!("/xrpc/app.bsky.actor.getProfile?actor={}", enc(did)),
                format!(
                    "/xrpc/app.bsky.feed.getAuthorFeed?actor={}&limit=30",
                    enc(did)
                ),
            ]
        })
        .collect())
}

async fn stream_len(stage: &Stage) -> u64 {
    let Ok(client) = skyhose_connect::redis_client(&stage.redis_url) else {
        return 0;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    redis::cmd("XLEN")
        .arg(&stage.keys.stream)
        .query_async(&mut conn)
        .await
        .unwrap_or(0)
}
