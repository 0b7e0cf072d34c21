//! What runs beside the workers: planner statistics kept from being absent
//! while the tables grow from empty, and the progress line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{connect, Totals};
use crate::error::IndexError;
use crate::stream::Stream;
use crate::IndexConfig;

/// The most read tables, whose statistics readers' plans depend on.
const ANALYZED_TABLES: &str =
    "records, notifications, actors, post_counts, post_rows, like_rows, repost_rows, follow_rows, profiles";

/// The first refresh, when a fresh database's tables have just got rows.
const FIRST_ANALYZE: Duration = Duration::from_secs(3);
/// The statistics target of the first refresh. Plans need the tables'
/// sizes and rough distributions, which a tenth of the default sample
/// gives; with the default one it cost a second of PostgreSQL's CPU in the
/// first minute of a fresh index (3% of its time at 1M events).
const FIRST_STATISTICS_TARGET: u32 = 10;
/// Later refreshes. Each samples every table again, which costs seconds of
/// PostgreSQL time once tables are large, so they are rare: the workers'
/// own statements do not depend on statistics (their sessions never
/// choose sequential scans), and autovacuum keeps them fresh where it runs.
const ANALYZE_EVERY: Duration = Duration::from_secs(600);

/// Keeps planner statistics of the index tables from being absent or far
/// off while they grow from empty (until autovacuum gets to them).
pub(super) async fn refresh_statistics(pool: Pool, stop: CancellationToken) {
    let mut wait = FIRST_ANALYZE;
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        let analyzed = async {
            let client = pool
                .get()
                .await
                .map_err(IndexError::pool("refreshing statistics"))?;
            let analyze = if first {
                format!(
                    "SET default_statistics_target = {FIRST_STATISTICS_TARGET}; \
                     ANALYZE {ANALYZED_TABLES}; RESET default_statistics_target"
                )
            } else {
                // The first refresh's setting may have stayed on this pooled
                // connection if that refresh failed halfway.
                format!("RESET default_statistics_target; ANALYZE {ANALYZED_TABLES}")
            };
            client
                .batch_execute(&analyze)
                .await
                .map_err(IndexError::pg("analyzing the index tables"))
        };
        if let Err(err) = analyzed.await {
            warn!(error = %err, "refreshing planner statistics failed");
        }
        wait = ANALYZE_EVERY;
        first = false;
    }
}

pub(super) async fn report_progress(
    cfg: Arc<IndexConfig>,
    redis: redis::Client,
    totals: Arc<Totals>,
    stop: CancellationToken,
) {
    let stream = Stream {
        key: &cfg.stream_key,
        group: &cfg.group,
    };
    let mut conn: Option<MultiplexedConnection> = None;
    let mut last = totals.summary();
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.log_every) => {}
            _ = stop.cancelled() => return,
        }
        let now = totals.summary();
        let rate =
            (now.events_indexed - last.events_indexed) as f64 / last_at.elapsed().as_secs_f64();
        // The backlog is informative only: a failure to read it is not an error.
        if conn.is_none() {
            conn = connect(&redis).await.ok();
        }
        let backlog = match conn.as_mut() {
            Some(redis) => stream.backlog(redis).await.ok(),
            None => None,
        };
        if backlog.is_none() {
            conn = None;
        }
        let (pending, lag) = backlog.unwrap_or((-1, None));
        info!(
            events_per_sec = rate.round(),
            events = now.events_indexed,
            dead_lettered = now.dead_lettered,
            claimed = now.claimed,
            retries = now.retries,
            pending,
            lag = lag.unwrap_or(-1),
            "index progress"
        );
        metrics::gauge!("skyhose_index_events_per_second").set(rate);
        if let Some(lag) = lag {
            metrics::gauge!("skyhose_index_lag_entries").set(lag as f64);
        }
        last = now;
        last_at = Instant::now();
    }
}
