//! Redis going away mid-stream: batches are retried on fresh connections,
//! nothing is dropped or written twice, and the cursor never runs ahead.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use skyhose_ingest::{run, CancellationToken, IngestConfig};
use skyhose_sim::relay::{self, RelayConfig};
use skyhose_sim::SimConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use common::unique_prefix;

const REDIS_ADDR: &str = "127.0.0.1:6379";

/// A TCP proxy to Redis that can be cut: open connections drop, new ones are refused.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0u64);
        let (flag, cuts_tx) = (down.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = cuts_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(REDIS_ADDR).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { port, down, cuts }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cuts.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_survive_a_redis_outage() {
    const N: u64 = 3000;
    let relay = relay::start(RelayConfig {
        sim: SimConfig {
            seed: 31,
            accounts: 200,
            ..SimConfig::default()
        },
        total: Some(N),
        rate: Some(3000.0),
        window: N as usize + 10,
        ..RelayConfig::default()
    })
    .await
    .expect("relay starts");
    let proxy = Proxy::start().await;
    let prefix = unique_prefix("outage");
    let cfg = IngestConfig {
        redis_url: format!("redis://127.0.0.1:{}", proxy.port),
        batch_max: 100,
        batch_linger: Duration::from_millis(10),
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        stall_timeout: IngestConfig::default().stall_timeout,
        stop_after: Some(N),
        ..common::config(&prefix, relay.url())
    };
    let task = tokio::spawn(run(cfg.clone(), CancellationToken::new()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set_down(true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.set_down(false);
    let summary = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("ingest finishes in time")
        .expect("task")
        .expect("ingest succeeds");
    assert!(summary.redis_errors > 0, "{summary:?}");
    assert_eq!(summary.events_written, N);

    let mut conn = redis::Client::open(format!("redis://{REDIS_ADDR}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&cfg.stream_key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    let seqs: Vec<i64> = entries
        .iter()
        .map(|(_, f)| f.get(2).and_then(|(_, v)| v.parse().ok()).expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=N as i64).collect::<Vec<_>>());
    let cursor: Option<i64> = conn.get(&cfg.cursor_key).await.expect("cursor");
    assert_eq!(cursor, Some(N as i64));
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap_or_default();
    for key in keys {
        let _: Result<(), _> = conn.del(&key).await;
    }
    relay.shutdown().await;
}
