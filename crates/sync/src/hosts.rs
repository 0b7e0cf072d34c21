//! Per-host politeness: at most `per_host` requests in flight to one host,
//! and no request while the host has said to wait (a 429, or
//! `ratelimit-remaining: 0` until `ratelimit-reset`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::{HttpClient, HttpError, Response};

/// How long a host is left alone after a 429 that says nothing of when to
/// come back.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);
/// The longest wait a host's headers can impose; a reset further out is
/// taken as this, and the request is tried again then.
const MAX_PAUSE: Duration = Duration::from_secs(300);

struct Host {
    permits: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
}

/// The hosts seen by this process: a few thousand PDSes on the real network,
/// so kept in memory (repos are not).
pub struct Hosts {
    http: HttpClient,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl Hosts {
    pub fn new(http: HttpClient, per_host: usize) -> Self {
        Hosts {
            http,
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn host(&self, base: &str) -> Arc<Host> {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts
            .entry(base.to_owned())
            .or_insert_with(|| {
                Arc::new(Host {
                    permits: Arc::new(Semaphore::new(self.per_host)),
                    paused_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// `GET base + path_and_query`, within the host's limits; a 429 pauses
    /// the host and is returned to the caller, which retries later.
    pub async fn get(&self, base: &str, path_and_query: &str) -> Result<Response, HttpError> {
        let host = self.host(base);
        let _permit: OwnedSemaphorePermit =
            host.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| HttpError::Transport {
                    url: base.to_owned(),
                    message: "host limiter closed".into(),
                })?;
        loop {
            let until = *host
                .paused_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => break,
            }
        }
        let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
        let response = self.http.get(&url).await?;
        metrics::counter!("skyhose_backfill_http_responses_total",
            "status" => status_class(response.status))
        .increment(1);
        let pause = if response.status == 429 {
            metrics::counter!("skyhose_backfill_rate_limited_total").increment(1);
            Some(response.reset.map_or(DEFAULT_PAUSE, reset_delay))
        } else if response.remaining == Some(0) {
            response.reset.map(reset_delay)
        } else {
            None
        };
        if let Some(pause) = pause {
            tracing::debug!(host = base, ?pause, "host asks to wait");
            let mut until = host
                .paused_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let new = Instant::now() + pause;
            if until.is_none_or(|old| old < new) {
                *until = Some(new);
            }
        }
        Ok(response)
    }

    /// How long `base` is paused for from now (zero when it is not).
    pub fn pause_left(&self, base: &str) -> Duration {
        let host = self.host(base);
        let until = *host
            .paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        until.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        })
    }
}

/// `ratelimit-reset` is a Unix time in seconds on atproto PDSes and a delay
/// in the IETF draft; a value past 2001 in seconds can only be a time.
fn reset_delay(reset: u64) -> Duration {
    const LARGEST_DELAY: u64 = 1_000_000_000;
    let delay = if reset > LARGEST_DELAY {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Duration::from_secs(reset.saturating_sub(now))
    } else {
        Duration::from_secs(reset)
    };
    delay.min(MAX_PAUSE)
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        429 => "429",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_is_a_delay_or_a_unix_time() {
        assert_eq!(reset_delay(3), Duration::from_secs(3));
        assert_eq!(reset_delay(100_000), MAX_PAUSE);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let delay = reset_delay(now + 10);
        assert!(delay <= Duration::from_secs(10) && delay >= Duration::from_secs(9));
        assert_eq!(reset_delay(now - 10), Duration::ZERO);
    }
}
