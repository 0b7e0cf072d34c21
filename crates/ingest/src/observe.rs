//! Metrics names, the `/metrics` endpoint, and the clock arithmetic the
//! progress line needs (lag behind the relay's newest event, from RFC 3339
//! event times).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use skyhose_proto::datetime::{days_from_civil, format_utc_millis};

pub const EVENTS: &str = "skyhose_ingest_events_total";
pub const RATE: &str = "skyhose_ingest_events_per_second";
pub const LAG_SECONDS: &str = "skyhose_ingest_lag_seconds";
pub const BYTES: &str = "skyhose_ingest_bytes_total";
pub const DECODE_ERRORS: &str = "skyhose_ingest_decode_errors_total";
pub const OP_ERRORS: &str = "skyhose_ingest_op_errors_total";
pub const DUPLICATES: &str = "skyhose_ingest_duplicates_total";
pub const RECONNECTS: &str = "skyhose_ingest_reconnects_total";
pub const REDIS_ERRORS: &str = "skyhose_ingest_redis_errors_total";
pub const BATCH_SECONDS: &str = "skyhose_ingest_batch_seconds";
pub const STREAM_LENGTH: &str = "skyhose_ingest_stream_length";
pub const GROUP_LAG: &str = "skyhose_ingest_group_lag";
pub const CURSOR: &str = "skyhose_ingest_cursor";
pub const BACKPRESSURE: &str = "skyhose_ingest_backpressure_pauses_total";
pub const PAUSED: &str = "skyhose_ingest_paused";
pub const COMMITS_VERIFIED: &str = "skyhose_ingest_commits_verified_total";
pub const COMMITS_REJECTED: &str = "skyhose_ingest_commits_rejected_total";
/// Account key lookups by `result` (`ok`, `transient`, `unresolvable`);
/// most are answered by the resolver's cache.
pub const KEY_LOOKUPS: &str = "skyhose_ingest_key_lookups_total";
pub const KEY_SECONDS: &str = "skyhose_ingest_key_lookup_seconds";
/// Keys fetched again because a signature failed with the remembered one.
pub const KEY_REFETCHES: &str = "skyhose_ingest_key_refetches_total";

/// Every counter and gauge at zero, so that each series is exported from the
/// start: a process that has not yet seen an event of some kind (the relay's
/// backlog was taken by its predecessor, no frame was ever malformed) still
/// has it, and rates over a restart start from zero.
pub fn describe_metrics(kinds: impl IntoIterator<Item = &'static str>) {
    for kind in kinds {
        metrics::counter!(EVENTS, "type" => kind).increment(0);
    }
    for name in [
        BYTES,
        DECODE_ERRORS,
        OP_ERRORS,
        DUPLICATES,
        REDIS_ERRORS,
        BACKPRESSURE,
        COMMITS_VERIFIED,
    ] {
        metrics::counter!(name).increment(0);
    }
    for reason in RECONNECT_REASONS {
        metrics::counter!(RECONNECTS, "reason" => *reason).increment(0);
    }
    metrics::counter!(COMMITS_REJECTED, "reason" => "bad_signature").increment(0);
    metrics::gauge!(PAUSED).set(0.0);
}

/// The `reason` labels of [`RECONNECTS`].
pub const RECONNECT_REASONS: &[&str] = &[
    "closed",
    "stalled",
    "consumer_too_slow",
    "future_cursor",
    "relay_error",
];

/// Installs the Prometheus recorder and serves it at `http://addr/metrics`.
pub async fn serve_metrics(addr: SocketAddr) -> std::io::Result<()> {
    let handle: PrometheusHandle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                handle.render()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(())
}

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Seconds since the epoch of an RFC 3339 UTC time like `2024-01-01T00:00:00.123Z`.
pub fn rfc3339_unix(text: &str) -> Option<f64> {
    let num = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = text
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            format!("0.{digits}").parse::<f64>().unwrap_or_default()
        })
        .unwrap_or_default();
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + s) as f64 + frac)
}

/// `now` as RFC 3339 UTC with milliseconds.
pub fn rfc3339_now() -> String {
    format_utc_millis((now_unix() * 1e6) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_now() {
        assert_eq!(rfc3339_unix("1970-01-02T00:00:01.500Z"), Some(86_401.5));
        assert_eq!(rfc3339_unix("2024-03-01T00:00:00Z"), Some(1_709_251_200.0));
        let now = rfc3339_now();
        let parsed = rfc3339_unix(&now).unwrap_or_default();
        assert!((parsed - now_unix()).abs() < 2.0, "{now}");
        assert_eq!(rfc3339_unix("garbage"), None);
    }
}
