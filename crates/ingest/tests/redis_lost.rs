//! Redis losing its data under a running ingest (a restart without
//! persistence, a flush, the keys deleted): ingest must not carry on from
//! its own cursor, which would leave whatever was lost and not yet indexed
//! out of the stream for good. It stops with `RedisLostData`, so the caller
//! resumes from the index's watermark.

mod common;

use std::time::Duration;

use redis::AsyncCommands;
use skyhose_ingest::{run, CancellationToken, IngestConfig, IngestError};
use skyhose_sim::relay::{self, RelayConfig};
use skyhose_sim::SimConfig;

use common::{redis, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_refuses_to_continue_a_stream_redis_lost() {
    let relay = relay::start(RelayConfig {
        sim: SimConfig {
            seed: 41,
            accounts: 100,
            ..SimConfig::default()
        },
        total: Some(20_000),
        rate: Some(4_000.0),
        window: 20_010,
        ..RelayConfig::default()
    })
    .await
    .expect("relay starts");
    let prefix = unique_prefix("lost");
    let cfg = IngestConfig {
        batch_max: 100,
        batch_linger: Duration::from_millis(10),
        ..common::config(&prefix, relay.url())
    };
    let mut conn = redis().await;
    let stop = CancellationToken::new();
    let ingest = tokio::spawn(run(cfg, stop.clone()));
    let mut cursor: Option<i64> = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cursor = conn.get(format!("{prefix}:cursor")).await.expect("GET");
        if cursor.unwrap_or(0) > 500 {
            break;
        }
    }
    assert!(cursor.unwrap_or(0) > 500, "ingest wrote nothing");

    let _: () = conn
        .del(&[format!("{prefix}:events"), format!("{prefix}:cursor")])
        .await
        .expect("DEL");
    let outcome = tokio::time::timeout(Duration::from_secs(10), ingest)
        .await
        .expect("ingest stops within 10 s of the loss")
        .expect("ingest task");
    assert!(
        matches!(outcome, Err(IngestError::RedisLostData { written: Some(c), .. }) if c >= cursor.unwrap_or(0)),
        "expected RedisLostData, got {outcome:?}"
    );
    // Nothing was written after the loss: the next start decides where from.
    let after: Option<i64> = conn.get(format!("{prefix}:cursor")).await.expect("GET");
    assert_eq!(after, None, "ingest wrote a cursor after the loss");
    let _: () = conn
        .del(&[
            format!("{prefix}:events"),
            format!("{prefix}:cursor"),
            format!("{prefix}:status"),
        ])
        .await
        .expect("DEL");
    stop.cancel();
    relay.shutdown().await;
}
