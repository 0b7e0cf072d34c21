//! `skyhose labels` killed with SIGKILL in the middle of a labeler's stream
//! and started again: it resumes from the cursor stored in PostgreSQL, and
//! the labels end exactly as the labeler's ground truth says; then
//! `skyhose takedown` and `restore` record and lift a takedown.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use skyhose_sim::labeler::{self, LabelerConfig};
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::SimConfig;
use tokio::process::{Child, Command};

fn spawn_labels(database_url: &str, labeler: &str, plc_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .arg("labels")
        .args(["--database-url", database_url, "--labeler", labeler])
        .args(["--plc-url", plc_url, "--allow-loopback-identity"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("skyhose binary starts")
}

async fn cursor(client: &tokio_postgres::Client) -> i64 {
    client
        .query_opt("SELECT cursor FROM labelers", &[])
        .await
        .ok()
        .flatten()
        .map_or(0, |row| row.get("cursor"))
}

/// `(uri, val) -> (neg, cts, exp, cid)` of every stored label.
async fn stored(
    client: &tokio_postgres::Client,
) -> BTreeMap<(String, String), (bool, String, Option<String>, Option<String>)> {
    client
        .query("SELECT uri, val, neg, cts, exp, cid FROM labels", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r.get("uri"), r.get("val")),
                (r.get("neg"), r.get("cts"), r.get("exp"), r.get("cid")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_resumes_from_the_cursor_without_loss() {
    let sim = SimConfig {
        accounts: 30,
        ..SimConfig::default()
    };
    let plc = plc::start(PlcConfig {
        sim: sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .unwrap();
    let subjects: Vec<String> = plc::initial_accounts(&sim)
        .into_iter()
        .map(|(did, _)| did)
        .collect();
    let server = labeler::start(LabelerConfig {
        sim: sim.clone(),
        subjects,
        interval: Some(Duration::from_millis(40)),
        ..LabelerConfig::default()
    })
    .await
    .unwrap();
    plc.register_labeler(server.did(), &labeler::labeler_handle(0), &server.url());
    let head = server.head_seq();
    assert!(head > 20, "{head} events");

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let database_url = format!(
        "postgres://postgres@127.0.0.1:5432/skyhose_test_labels_kill_{}_{nanos}",
        std::process::id()
    );
    skyhose_index::ensure_database(&database_url).await.unwrap();
    let pool = skyhose_index::connect_pool(&database_url, 2).unwrap();
    skyhose_index::migrate(&pool).await.unwrap();
    let client = pool.get().await.unwrap();

    let mut child = spawn_labels(&database_url, server.did(), &plc.url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cursor(&client).await < head / 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let at_kill = cursor(&client).await;
    assert!(at_kill < head, "the stream ended before the kill");

    let mut child = spawn_labels(&database_url, server.did(), &plc.url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while cursor(&client).await < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not at head after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;

    let expected: BTreeMap<_, _> = server
        .script()
        .truth
        .labels
        .values()
        .map(|l| {
            (
                (l.uri.clone(), l.val.clone()),
                (l.neg, l.cts.clone(), l.exp.clone(), l.cid.clone()),
            )
        })
        .collect();
    assert_eq!(stored(&client).await, expected);

    // Takedowns: recorded with their reason, lifted by restore.
    let subject = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    let run = |command: &'static str| {
        let database_url = database_url.clone();
        async move {
            Command::new(env!("CARGO_BIN_EXE_skyhose"))
                .args([command, subject, "--reason", "spam run"])
                .args(["--database-url", &database_url])
                .env("RUST_LOG", "warn")
                .output()
                .await
                .unwrap()
        }
    };
    let out = run("takedown").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reason: String = client
        .query_one(
            "SELECT reason FROM takedowns WHERE subject = $1",
            &[&subject],
        )
        .await
        .unwrap()
        .get("reason");
    assert_eq!(reason, "spam run");
    let out = run("restore").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = client
        .query("SELECT subject FROM takedowns", &[])
        .await
        .unwrap();
    assert!(left.is_empty());
    let bad = Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .args(["takedown", "not-a-subject", "--reason", "x"])
        .args(["--database-url", &database_url])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a DID"));

    drop(client);
    drop(pool);
    server.shutdown().await;
    plc.shutdown().await;
    skyhose_index::drop_database(&database_url).await.unwrap();
}
