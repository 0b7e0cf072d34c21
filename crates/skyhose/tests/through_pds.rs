//! The official app's path to skyhose, end to end: the reference PDS
//! (`@atproto/pds`, with an in-memory PLC directory) has skyhose as its
//! default AppView, `skyhose run` indexes that PDS's firehose, and the
//! official client (`@atproto/api`) logged in to the PDS reads the timeline,
//! mutes actors and threads, bookmarks and clears notifications through it,
//! while tokens for
//! another audience or method, expired, unsigned or forged ones are refused
//! with the official error names. The steps are in `tests/pds/drive.mjs`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const REDIS: &str = "redis://127.0.0.1:6379";
const SERVICE_DID: &str = "did:web:appview.test";

fn pds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pds")
}

/// Installs the PDS and the client when they are missing, as `.ci/run`
/// does (`npm install --no-save`: the lockfile's versions; `npm ci` refuses
/// a lockfile without cbor-extract's optional packages, which the registry
/// does not have).
fn ensure_node_modules() {
    if pds_dir().join("node_modules/@atproto/pds").exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(pds_dir())
        .status()
        .expect("npm is installed");
    assert!(
        status.success(),
        "npm install failed in {}",
        pds_dir().display()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_uses_skyhose_through_the_reference_pds() {
    ensure_node_modules();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("skyhose_test_pds_{}_{nanos}", std::process::id());
    let prefix = format!("test:{name}");
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let api_port = free_port();
    let api_url = format!("http://127.0.0.1:{api_port}");

    // The PDS and its directory start first: skyhose reads their URLs.
    let mut driver = Command::new("node")
        .arg("--require")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/parity/loopback.cjs"))
        .arg("--dns-result-order=ipv4first")
        .arg("drive.mjs")
        .current_dir(pds_dir())
        .env("SKYHOSE_URL", &api_url)
        .env("SKYHOSE_DID", SERVICE_DID)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let mut lines = BufReader::new(driver.stdout.take().expect("stdout")).lines();
    let started = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the PDS starts within a minute")
        .expect("driver output")
        .expect("the driver prints the PDS's URLs");
    let urls: serde_json::Value = serde_json::from_str(&started).expect("URLs as JSON");
    let (plc, pds) = (
        urls["plc"].as_str().expect("plc URL"),
        urls["pds"].as_str().expect("pds URL"),
    );

    let data_dir = std::env::temp_dir().join(&name);
    let mut skyhose = Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .args(["run", "--workers", "1"])
        .args(["--relay", &pds.replace("http://", "ws://")])
        .args(["--redis", REDIS, "--database-url", &database_url])
        .args(["--stream-key", &format!("{prefix}:events")])
        .args(["--cursor-key", &format!("{prefix}:cursor")])
        .args(["--status-key", &format!("{prefix}:status")])
        .args(["--dead-letter-key", &format!("{prefix}:dead")])
        .args(["--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--service-did", SERVICE_DID, "--plc-url", plc])
        .arg("--allow-loopback-identity")
        .arg("--data-dir")
        .arg(&data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("skyhose binary starts");
    let mut healthy = false;
    for _ in 0..150 {
        if let Some((200, _)) = common::http_get(api_port, "/xrpc/_health").await {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healthy, "skyhose serves within 30 s");

    let mut stdin = driver.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").await.expect("tell the driver");
    let mut report = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(180), async {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
            report.push(line);
        }
        driver.wait().await
    })
    .await;

    let _ = skyhose.start_kill();
    let _ = skyhose.wait().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Ok(client) = redis::Client::open(REDIS) {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            common::delete_keys(&mut conn, &prefix).await;
        }
    }
    let _ = skyhose_index::drop_database(&database_url).await;

    let status = outcome
        .expect("the steps finish within 3 minutes")
        .expect("driver exit status");
    assert!(
        status.success(),
        "a step through the PDS failed:\n{}",
        report.join("\n")
    );
}
