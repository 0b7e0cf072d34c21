//! `skyhose ingest` killed with SIGKILL at random moments and restarted: the
//! cursor lives in the same transaction as the entries, so at the end every
//! relay seq is in the stream exactly once, in order.

mod common;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::Stdio;
use std::time::Duration;

use redis::AsyncCommands;
use skyhose_sim::relay::{self, RelayConfig};
use skyhose_sim::SimConfig;
use tokio::process::{Child, Command};

const REDIS: &str = "redis://127.0.0.1:6379";
const TOTAL: u64 = 20_000;
const KILLS: usize = 12;

fn random_below(n: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.finish() % n.max(1)
}

fn spawn_ingest(relay_url: &str, prefix: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .arg("ingest")
        .args(["--relay", relay_url, "--redis", REDIS])
        .args(["--stream-key", &format!("{prefix}:events")])
        .args(["--cursor-key", &format!("{prefix}:cursor")])
        .args(["--status-key", &format!("{prefix}:status")])
        .args(["--group", "kill-test"])
        // Redis starts empty: read the relay from its first event.
        .args(["--fallback-cursor", "0"])
        .args(["--batch-max", "100", "--batch-linger", "5ms"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("skyhose binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_skips_or_repeats() {
    let relay = relay::start(RelayConfig {
        sim: SimConfig {
            seed: 21,
            accounts: 200,
            ..SimConfig::default()
        },
        total: Some(TOTAL),
        // Slow enough that the kills land while events keep arriving.
        rate: Some(5_000.0),
        window: TOTAL as usize + 10,
        ..RelayConfig::default()
    })
    .await
    .expect("relay starts");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let prefix = format!("test:ingest-kill:{}:{nanos}", std::process::id());
    let mut conn = redis::Client::open(REDIS)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");

    for _ in 0..KILLS {
        let mut child = spawn_ingest(&relay.url(), &prefix);
        tokio::time::sleep(Duration::from_millis(80 + random_below(300))).await;
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
    }
    let cursor_after_kills: Option<i64> =
        conn.get(format!("{prefix}:cursor")).await.expect("cursor");
    assert!(
        cursor_after_kills.unwrap_or(0) > 0,
        "the killed runs wrote nothing"
    );
    let mut child = spawn_ingest(&relay.url(), &prefix);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let cursor: Option<i64> = conn.get(format!("{prefix}:cursor")).await.expect("cursor");
        if cursor == Some(TOTAL as i64) || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;

    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}:events"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    let seqs: Vec<i64> = entries
        .iter()
        .filter(|(_, fields)| fields.first().map(|(_, t)| t.as_str()) != Some("info"))
        .map(|(_, fields)| {
            fields
                .iter()
                .find(|(k, _)| k == "seq")
                .and_then(|(_, v)| v.parse().ok())
                .expect("numeric seq")
        })
        .collect();
    assert_eq!(seqs, (1..=TOTAL as i64).collect::<Vec<_>>());

    common::delete_keys(&mut conn, &prefix).await;
    relay.shutdown().await;
}
