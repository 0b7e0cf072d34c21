//! What `run` needs to know: where to read, where to write, and its limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::entry::Compat;
use crate::verify::VerifyConfig;

pub const DEFAULT_STREAM_KEY: &str = "firehose:events";
pub const DEFAULT_CURSOR_KEY: &str = "firehose:cursor";
pub const DEFAULT_STATUS_KEY: &str = "firehose:status";
pub const DEFAULT_GROUP: &str = "firehose-processors";
pub const DEFAULT_MAX_STREAM_LEN: u64 = 500_000;
pub const SUBSCRIBE_PATH: &str = "/xrpc/com.atproto.sync.subscribeRepos";

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `ws://` or `wss://` relay; the subscribeRepos path is added when missing.
    pub relay_url: String,
    pub redis_url: String,
    pub stream_key: String,
    pub cursor_key: String,
    pub status_key: String,
    /// Consumer group created at start so the stream retains entries for it.
    pub group: String,
    /// Stream length at which reading pauses until groups catch up.
    pub max_stream_len: u64,
    /// Resume from this seq whatever Redis says.
    pub cursor_override: Option<i64>,
    /// Resume point used only when Redis has neither a cursor nor a stream
    /// (e.g. the index's committed watermark after Redis lost its data).
    pub fallback_cursor: Option<i64>,
    pub compat: Compat,
    /// Re-hash record blocks against their CIDs.
    pub verify_cids: bool,
    /// Entries per batch written to Redis (one atomic script each).
    pub batch_max: usize,
    /// Longest an entry waits for its batch to fill.
    pub batch_linger: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection that lived this long resets the reconnect backoff.
    pub healthy_reset: Duration,
    /// No frame for this long: reconnect.
    pub stall_timeout: Duration,
    /// A WebSocket ping goes to the relay this often, so a relay with nothing
    /// to send still answers within `stall_timeout` and is not taken for dead.
    pub ping_interval: Duration,
    /// Interval of the progress log line.
    pub status_interval: Duration,
    pub metrics_listen: Option<SocketAddr>,
    /// Largest WebSocket message accepted.
    pub max_frame_bytes: usize,
    /// Stop once this many events were written (benchmarks and tests).
    pub stop_after: Option<u64>,
    /// The relay's clock, when it is not the wall clock: the lag reported
    /// is the time between the relay's newest event and the last one
    /// written. `None` for a live relay, whose newest event is now.
    pub relay_clock: Option<RelayClock>,
    /// Check each commit's signature and `prevData` against the account's
    /// key; a commit that fails becomes a resync request. `None`: off.
    pub verify: Option<VerifyConfig>,
}

/// Seconds since the Unix epoch of a relay's newest event (see
/// [`IngestConfig::relay_clock`]).
#[derive(Clone)]
pub struct RelayClock(Arc<dyn Fn() -> f64 + Send + Sync>);

impl RelayClock {
    pub fn new(clock: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        RelayClock(Arc::new(clock))
    }

    pub fn now(&self) -> f64 {
        (self.0)()
    }
}

impl std::fmt::Debug for RelayClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelayClock({:.3})", self.now())
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            relay_url: "wss://bsky.network".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            stream_key: DEFAULT_STREAM_KEY.into(),
            cursor_key: DEFAULT_CURSOR_KEY.into(),
            status_key: DEFAULT_STATUS_KEY.into(),
            group: DEFAULT_GROUP.into(),
            max_stream_len: DEFAULT_MAX_STREAM_LEN,
            cursor_override: None,
            fallback_cursor: None,
            compat: Compat::Full,
            verify_cids: true,
            batch_max: 1000,
            batch_linger: Duration::from_millis(50),
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
            healthy_reset: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            status_interval: Duration::from_secs(5),
            metrics_listen: None,
            max_frame_bytes: 16 << 20,
            stop_after: None,
            relay_clock: None,
            verify: None,
        }
    }
}

/// The subscribeRepos URL for `base`, with `?cursor=N` when resuming.
pub fn subscribe_url(base: &str, cursor: Option<i64>) -> String {
    let base = base.trim_end_matches('/');
    let (path, query) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base, None),
    };
    let mut url = if path.ends_with(SUBSCRIBE_PATH) {
        path.to_owned()
    } else {
        format!("{path}{SUBSCRIBE_PATH}")
    };
    let mut params: Vec<String> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
        .map(str::to_owned)
        .collect();
    if let Some(cursor) = cursor {
        params.push(format!("cursor={cursor}"));
    }
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_url_adds_path_and_cursor() {
        assert_eq!(
            subscribe_url("wss://bsky.network", Some(5)),
            "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos?cursor=5"
        );
        assert_eq!(
            subscribe_url(
                "ws://h:1/xrpc/com.atproto.sync.subscribeRepos?cursor=3",
                None
            ),
            "ws://h:1/xrpc/com.atproto.sync.subscribeRepos"
        );
        assert_eq!(
            subscribe_url("ws://h:1/", None),
            "ws://h:1/xrpc/com.atproto.sync.subscribeRepos"
        );
    }
}
