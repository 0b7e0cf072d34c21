//! `skyhose backfill` killed with SIGKILL after some repos are done and
//! started again: the second run does not fetch the done repos again,
//! reclaims the repos the killed run held once their claim is older than
//! `--reclaim-after`, and the index ends equal to the simulated network.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skyhose_sim::hosts::{self, HostsConfig};
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::{Network, SimConfig};
use tokio::process::{Child, Command};

const ACCOUNTS: usize = 150;

fn spawn_backfill(database_url: &str, source: &str, plc_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .arg("backfill")
        .args(["--database-url", database_url, "--source", source])
        .args(["--plc-url", plc_url, "--allow-loopback-identity"])
        .args(["--concurrency", "4", "--per-host", "2"])
        .args(["--batch-records", "200", "--batch-linger", "5ms"])
        .args(["--reclaim-after", "2s", "--log-every", "1s"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("skyhose binary starts")
}

/// `did -> (state, attempts, updated_at as text)` of every queued repo.
async fn queue(client: &tokio_postgres::Client) -> BTreeMap<String, (String, i32, String)> {
    client
        .query(
            "SELECT did, state, attempts, updated_at::text AS updated FROM backfill_repos",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get("did"),
                (row.get("state"), row.get("attempts"), row.get("updated")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_resumes_without_refetching_and_ends_equal() {
    let sim = SimConfig {
        seed: 23,
        accounts: ACCOUNTS,
        history_commits_per_account: 30,
        ..SimConfig::default()
    };
    let network = Network::new(sim.clone());
    let truth = network.truth();
    let network = Arc::new(Mutex::new(network));
    let hosts = hosts::start(HostsConfig::default(), network, sim.clone())
        .await
        .unwrap();
    let plc = plc::start(PlcConfig {
        sim: sim.clone(),
        pds_endpoints: hosts.urls(),
        ..PlcConfig::default()
    })
    .await
    .unwrap();

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let database_url = format!(
        "postgres://postgres@127.0.0.1:5432/skyhose_test_backfill_kill_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    skyhose_index::ensure_database(&database_url).await.unwrap();
    let pool = skyhose_index::connect_pool(&database_url, 2).unwrap();
    skyhose_index::migrate(&pool).await.unwrap();
    let client = pool.get().await.unwrap();

    // Killed once a tenth of the repos are loaded.
    let mut child = spawn_backfill(&database_url, &hosts.front_url(), &plc.url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = queue(&client)
            .await
            .values()
            .filter(|(state, ..)| state == "done")
            .count();
        if done >= ACCOUNTS / 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} repos done after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let at_kill = queue(&client).await;
    let done_at_kill: BTreeMap<_, _> = at_kill
        .iter()
        .filter(|(_, (state, ..))| state == "done")
        .collect();
    let running_at_kill: Vec<&String> = at_kill
        .iter()
        .filter(|(_, (state, ..))| state == "running")
        .map(|(did, _)| did)
        .collect();
    assert!(
        done_at_kill.len() < ACCOUNTS,
        "the run ended before it was killed"
    );
    assert!(!running_at_kill.is_empty(), "the killed run held no claims");

    let mut child = spawn_backfill(&database_url, &hosts.front_url(), &plc.url());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the second run ends within 60 s")
        .unwrap();
    assert!(status.success(), "the second run exited with {status}");

    let after = queue(&client).await;
    assert_eq!(after.len(), ACCOUNTS);
    for (did, (state, attempts, _)) in &after {
        assert_eq!(state, "done", "{did} ended {state}");
        if running_at_kill.contains(&did) {
            assert!(*attempts >= 2, "{did} was not claimed again");
        }
    }
    for (did, before) in &done_at_kill {
        assert_eq!(
            after.get(*did),
            Some(*before),
            "{did}, done before the kill, was claimed again"
        );
    }

    let snapshot = skyhose_index::snapshot(&pool).await.unwrap();
    assert_eq!(snapshot.records, truth.records);
    for (uri, want) in &truth.posts {
        let got = snapshot.posts.get(uri).expect("post indexed");
        assert_eq!(
            (got.likes, got.reposts, got.replies, got.quotes),
            (
                want.likes as i64,
                want.reposts as i64,
                want.replies as i64,
                want.quotes as i64
            ),
            "counts of {uri}"
        );
    }
    for (did, want) in &truth.actors {
        let got = snapshot.actors.get(did).expect("actor indexed");
        assert_eq!(
            (got.followers, got.follows, got.posts),
            (
                want.followers as i64,
                want.follows as i64,
                want.posts as i64
            ),
            "counts of {did}"
        );
    }

    drop(client);
    drop(pool);
    plc.shutdown().await;
    hosts.shutdown().await;
    skyhose_index::drop_database(&database_url).await.unwrap();
}
