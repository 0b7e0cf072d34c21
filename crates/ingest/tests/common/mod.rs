//! What the ingest tests share: their own Redis keys per test, a config that
//! reads the whole relay window quickly, and a Redis connection.
#![allow(dead_code)]

use std::time::Duration;

use skyhose_ingest::IngestConfig;

pub const REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test (or run of this one) uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("test:ingest:{name}:{}:{nanos}", std::process::id())
}

/// Ingest from `relay_url` into keys under `prefix`, from the start of the
/// relay's window, with small batches and short back-offs.
pub fn config(prefix: &str, relay_url: String) -> IngestConfig {
    IngestConfig {
        relay_url,
        redis_url: REDIS.into(),
        stream_key: format!("{prefix}:events"),
        cursor_key: format!("{prefix}:cursor"),
        status_key: format!("{prefix}:status"),
        group: "testers".into(),
        cursor_override: Some(0),
        batch_max: 200,
        batch_linger: Duration::from_millis(20),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(100),
        stall_timeout: Duration::from_secs(5),
        ..IngestConfig::default()
    }
}

pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects")
}

/// Deletes every key under `prefix`.
pub async fn cleanup(prefix: &str) {
    use redis::AsyncCommands;
    let mut conn = redis().await;
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap_or_default();
    for key in keys {
        let _: Result<(), _> = conn.del(&key).await;
    }
}

/// A stream entry: its id and its fields in order.
pub type Entry = (String, Vec<(String, String)>);

/// Every entry of `stream`, oldest first.
pub async fn read_all(stream: &str) -> Vec<Entry> {
    let mut conn = redis().await;
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange")
}
