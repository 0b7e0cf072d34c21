//! `skyhose demo` and `skyhose run` end to end: they index the simulated relay
//! (built in, or in another process the way a real relay is), stop cleanly on
//! SIGINT/SIGTERM, start again from their cursor, and in the end the stream
//! holds every seq exactly once and the database equals the simulator's ground
//! truth.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use skyhose_sim::{generate, SimConfig};
use tokio::process::{Child, Command};

const REDIS: &str = "redis://127.0.0.1:6379";
const ACCOUNTS: usize = 300;
const SEED: u64 = 7;

struct Env {
    prefix: String,
    database_url: String,
}

impl Env {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("skyhose_test_demo_{}_{nanos}", std::process::id());
        Env {
            prefix: format!("test:{name}"),
            database_url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
        }
    }

    fn spawn_demo(&self, api_port: u16) -> Child {
        self.pipeline(&["demo"], api_port)
            .args([
                "--sim-rate",
                "3000",
                "--sim-accounts",
                &ACCOUNTS.to_string(),
            ])
            .args(["--sim-seed", &SEED.to_string()])
            .spawn()
            .expect("skyhose binary starts")
    }

    /// `skyhose run` reading a relay at `relay_url`.
    fn spawn_run(&self, relay_url: &str, api_port: u16) -> Child {
        self.pipeline(&["run", "--relay", relay_url, "--workers", "2"], api_port)
            .spawn()
            .expect("skyhose binary starts")
    }

    /// A `run`/`demo` command on this test's keys and database.
    fn pipeline(&self, command: &[&str], api_port: u16) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyhose"));
        cmd.args(command)
            .args(["--redis", REDIS, "--database-url", &self.database_url])
            .args(["--stream-key", &format!("{}:events", self.prefix)])
            .args(["--cursor-key", &format!("{}:cursor", self.prefix)])
            .args(["--status-key", &format!("{}:status", self.prefix)])
            .args(["--dead-letter-key", &format!("{}:dead", self.prefix)])
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }

    async fn watermark(&self) -> Option<i64> {
        let pool = skyhose_index::connect_pool(&self.database_url, 1).ok()?;
        skyhose_index::resume_seq(&pool).await.ok().flatten()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn interrupt_and_wait(child: Child) {
    signal_and_wait(child, "INT").await;
}

/// Sends `signal` (`INT`, `TERM`) and expects a clean exit within 30 s.
async fn signal_and_wait(mut child: Child, signal: &str) {
    let pid = child.id().expect("child is running");
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("the pipeline stops within 30 s of SIG{signal}"))
        .expect("wait for the pipeline");
    assert!(
        exit.success(),
        "the pipeline exited with {exit} after SIG{signal}"
    );
}

/// The API of the running demo answers getProfile for an indexed actor.
/// The watermark may already be past its target when a process starts (its
/// predecessor indexed everything), so the process may not be listening yet.
async fn assert_serves_profile(env: &Env, port: u16) {
    let pool = skyhose_index::connect_pool(&env.database_url, 1).expect("pool");
    let client = pool.get().await.expect("connection");
    let did: String = client
        .query_one(
            // The demo's labeler takes some accounts down, which the
            // API then answers for with AccountTakedown.
            "SELECT did FROM actors a WHERE indexed AND status = 'active' \
             AND NOT EXISTS (SELECT 1 FROM takedowns t WHERE t.subject = a.did) \
             ORDER BY did LIMIT 1",
            &[],
        )
        .await
        .expect("an indexed actor")
        .get(0);
    let path = format!("/xrpc/app.bsky.actor.getProfile?actor={did}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        if let Some(answer) = common::http_get(port, &path).await {
            break answer;
        }
        assert!(Instant::now() < deadline, "the API answers");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&did), "{body}");
}

async fn run_until_watermark(env: &Env, at_least: i64) {
    let port = free_port();
    let child = env.spawn_demo(port);
    wait_for_watermark(env, at_least).await;
    assert_serves_profile(env, port).await;
    interrupt_and_wait(child).await;
}

async fn wait_for_watermark(env: &Env, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.watermark().await.unwrap_or(0) < at_least {
        assert!(
            Instant::now() < deadline,
            "watermark never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stops_cleanly_and_resumes_without_loss_or_repeats() {
    let env = Env::new();
    run_until_watermark(&env, 3_000).await;
    let first_cursor: i64 = {
        let client = redis::Client::open(REDIS).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        conn.get(format!("{}:cursor", env.prefix))
            .await
            .expect("cursor saved on shutdown")
    };
    run_until_watermark(&env, first_cursor + 3_000).await;
    let conn = assert_complete(&env).await;
    clean_up(&env, conn).await;
}

/// What is left of the stream runs without gaps or repeats up to the saved
/// cursor, every event up to it is indexed, and the database equals the
/// simulator's ground truth. Returns the Redis connection for clean-up.
async fn assert_complete(env: &Env) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let cursor: i64 = conn
        .get(format!("{}:cursor", env.prefix))
        .await
        .expect("cursor");
    let entries: redis::streams::StreamRangeReply = conn
        .xrange_all(format!("{}:events", env.prefix))
        .await
        .expect("stream");
    let seqs: Vec<i64> = entries
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("seq"))
        .filter_map(|s| s.parse().ok())
        .collect();
    // Acknowledged entries may have been trimmed; what is left runs without gaps
    // or repeats across the restart up to the cursor.
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs repeat, go back or skip"
    );
    assert_eq!(seqs.last().copied(), Some(cursor));

    // Every event up to the cursor is indexed, and the result is the ground truth.
    assert_eq!(env.watermark().await, Some(cursor));
    let sim = SimConfig {
        seed: SEED,
        accounts: ACCOUNTS,
        ..SimConfig::default()
    };
    let (_, truth) = generate(&sim, usize::try_from(cursor).expect("positive cursor"));
    let pool = skyhose_index::connect_pool(&env.database_url, 1).expect("pool");
    let snapshot = skyhose_index::snapshot(&pool).await.expect("snapshot");
    drop(pool);
    assert!(
        serde_json::to_value(&snapshot).expect("snapshot json")
            == serde_json::to_value(&truth).expect("truth json"),
        "the database differs from the simulator's ground truth"
    );

    conn
}

/// The seq of the stream's first entry, once there is one.
async fn first_stream_seq(env: &Env, conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let entries: redis::streams::StreamRangeReply = conn
            .xrange_count(format!("{}:events", env.prefix), "-", "+", 1)
            .await
            .expect("stream");
        if let Some(seq) = entries
            .ids
            .first()
            .and_then(|e| e.get::<String>("seq"))
            .and_then(|s| s.parse().ok())
        {
            return seq;
        }
        assert!(
            Instant::now() < deadline,
            "nothing written after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn clean_up(env: &Env, mut conn: redis::aio::MultiplexedConnection) {
    common::delete_keys(&mut conn, &env.prefix).await;
    let _ = skyhose_index::drop_database(&env.database_url).await;
}

/// Redis keeps nothing on disk here: after a wipe, the restarted demo must
/// resume from the seq committed in PostgreSQL and lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_resumes_from_the_database_after_redis_is_wiped() {
    let env = Env::new();
    run_until_watermark(&env, 3_000).await;
    let committed = env.watermark().await.expect("a committed watermark");
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = conn.keys(format!("{}:*", env.prefix)).await.expect("keys");
    assert!(!keys.is_empty());
    let _: () = conn.del(keys).await.expect("wipe");
    let port = free_port();
    let child = env.spawn_demo(port);
    // Read before ingest's first periodic trim can drop it: acknowledged
    // entries are trimmed every few seconds.
    let first = first_stream_seq(&env, &mut conn).await;
    assert_eq!(
        first,
        committed + 1,
        "the stream does not resume where the index stopped"
    );
    wait_for_watermark(&env, committed + 3_000).await;
    assert_serves_profile(&env, port).await;
    interrupt_and_wait(child).await;
    let conn = assert_complete(&env).await;
    clean_up(&env, conn).await;
}

/// SIGKILL at random moments: whatever was committed stays, whatever was not
/// is redone, and the end state is the ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_killed_at_random_moments_loses_and_repeats_nothing() {
    let env = Env::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    for kill in 0..3u64 {
        let mut child = env.spawn_demo(free_port());
        // Let it start and make progress, then kill it mid-flight.
        let wait_ms = 1_500 + u64::from(nanos).wrapping_mul(kill + 1) % 2_000;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        child.kill().await.expect("SIGKILL");
        let _ = child.wait().await;
    }
    let before = env.watermark().await.unwrap_or(0);
    run_until_watermark(&env, before + 2_000).await;
    let conn = assert_complete(&env).await;
    clean_up(&env, conn).await;
}

/// `skyhose run` as in production, against a relay in another process: it
/// serves what it indexed on one `/metrics` for every stage, stops on
/// SIGTERM, resumes from its cursor and finishes the relay's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_an_external_relay_resumes_after_sigterm() {
    const TOTAL: i64 = 6_000;
    let env = Env::new();
    let relay_port = free_port();
    let _relay = Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .arg("sim-relay")
        .args(["--listen", &format!("127.0.0.1:{relay_port}")])
        .args(["--seed", &SEED.to_string()])
        .args(["--accounts", &ACCOUNTS.to_string()])
        .args(["--total", &TOTAL.to_string(), "--rate", "2000", "--no-plc"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("skyhose sim-relay starts");
    let relay_url = format!("ws://127.0.0.1:{relay_port}");
    // Without a cursor a relay starts at its live head; cursor 0 asks for
    // its whole window, so the truth of seq 1.. applies.
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = conn
        .set(format!("{}:cursor", env.prefix), 0)
        .await
        .expect("cursor set");

    for target in [2_000, TOTAL] {
        let port = free_port();
        let child = env.spawn_run(&relay_url, port);
        wait_for_watermark(&env, target).await;
        assert_serves_profile(&env, port).await;
        let (status, metrics) = common::http_get(port, "/metrics")
            .await
            .expect("metrics answer");
        assert_eq!(status, 200);
        for family in [
            "skyhose_ingest_events_total",
            "skyhose_index_events_total",
            "skyhose_api_requests_total",
        ] {
            assert!(metrics.contains(family), "{family} missing from /metrics");
        }
        signal_and_wait(child, "TERM").await;
    }
    let conn = assert_complete(&env).await;
    clean_up(&env, conn).await;
}
