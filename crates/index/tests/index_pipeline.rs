//! End-to-end: entries in a Redis Stream, indexed by the consumer-group
//! workers into a fresh PostgreSQL database, compared with the sequential
//! reference.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    assert_actor_rows_mirror_records, diff, generate, generate_among, model, Rng, TestEnv,
};
use tokio_util::sync::CancellationToken;

async fn index_and_snapshot(env: &TestEnv, workers: usize) -> serde_json::Value {
    let summary = skyhose_index::run(env.config(workers), CancellationToken::new())
        .await
        .expect("index run");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    let pool = env.pool().await;
    let snapshot = skyhose_index::snapshot(&pool).await.expect("snapshot");
    serde_json::to_value(snapshot).expect("snapshot json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_single_worker_matches_the_reference() {
    let env = TestEnv::new();
    let entries = generate(3000, 7);
    env.push(&entries).await;
    let actual = index_and_snapshot(&env, 1).await;
    let expected = model(&entries);
    assert!(actual == expected, "{}", diff(&expected, &actual));
    let pool = env.pool().await;
    let last_seq = entries
        .last()
        .and_then(|entry| entry.fields[2].1.parse::<i64>().ok());
    assert_eq!(
        skyhose_index::resume_seq(&pool).await.expect("watermark"),
        last_seq
    );
    assert_repo_progress(&pool, &entries).await;
    env.cleanup().await;
}

/// Every repo's progress is its newest commit's seq and rev (repos whose
/// account was deleted are left out: their later commits are ignored).
async fn assert_repo_progress(pool: &skyhose_index::Pool, entries: &[common::Entry]) {
    let mut expected: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut deleted = BTreeSet::new();
    for entry in entries {
        let data: serde_json::Value = serde_json::from_str(&entry.fields[1].1).expect("data");
        let seq: i64 = entry.fields[2].1.parse().expect("seq");
        match entry.fields[0].1.as_str() {
            "commit" => {
                let repo = data["repo"].as_str().expect("repo").to_owned();
                let rev = data["rev"].as_str().expect("rev").to_owned();
                let newest = expected.entry(repo).or_insert((seq, rev.clone()));
                if newest.0 < seq {
                    *newest = (seq, rev);
                }
            }
            "account" if data["status"] == "deleted" => {
                deleted.insert(data["did"].as_str().expect("did").to_owned());
            }
            _ => {}
        }
    }
    let client = pool.get().await.expect("connection");
    let mut compared = 0;
    for (did, (seq, rev)) in &expected {
        if deleted.contains(did) {
            continue;
        }
        let row = client
            .query_one("SELECT seq, rev FROM repo_progress WHERE did = $1", &[did])
            .await
            .expect("repo_progress");
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, String>(1)),
            (*seq, rev.clone()),
            "progress of {did}"
        );
        compared += 1;
    }
    assert!(compared > 10, "only {compared} repos compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_and_replayed_across_four_workers_matches_the_ordered_run() {
    let env = TestEnv::new();
    let entries = generate(3000, 11);
    let mut shuffled = entries.clone();
    Rng::new(99).shuffle(&mut shuffled);
    let mut replayed = shuffled.clone();
    replayed.extend(entries.iter().cloned());
    env.push(&replayed).await;
    let actual = index_and_snapshot(&env, 4).await;
    let expected = model(&entries);
    assert!(actual == expected, "{}", diff(&expected, &actual));
    let pool = env.pool().await;
    let (_, chats) = assert_actor_rows_mirror_records(&pool).await;
    assert!(chats > 0, "no chat declarations to compare");
    assert_repo_progress(&pool, &entries).await;
    drop(pool);
    env.cleanup().await;
}

/// Two indexer processes in one group (as on two machines) split the
/// stream by entry, not by repo, so an account's deletion and its older
/// commits are applied concurrently by different processes: the deletion
/// must still win, whichever transaction commits first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_on_deletions_match_the_reference() {
    let env = TestEnv::new();
    let entries = generate(4000, 23);
    let deletions = entries
        .iter()
        .filter(|e| e.fields[0].1 == "account" && e.fields[1].1.contains("\"deleted\""))
        .count();
    assert!(deletions > 0, "no account deletions to race");
    let mut shuffled = entries.clone();
    Rng::new(5).shuffle(&mut shuffled);
    env.push(&shuffled).await;
    let runs = [env.config(2), env.config(2)].map(|mut cfg| {
        cfg.batch_size = 50;
        tokio::spawn(skyhose_index::run(cfg, CancellationToken::new()))
    });
    for run in runs {
        let summary = run.await.expect("index task").expect("index run");
        assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    }
    let pool = env.pool().await;
    let actual = serde_json::to_value(skyhose_index::snapshot(&pool).await.expect("snapshot"))
        .expect("snapshot json");
    let expected = model(&entries);
    assert!(actual == expected, "{}", diff(&expected, &actual));
    drop(pool);
    env.cleanup().await;
}

/// A rough throughput figure for 1, 2 and 4 workers, each into a fresh
/// database (the full benchmark is `skyhose bench index`):
/// `cargo test --release -p skyhose-index --test index_pipeline -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_probe() {
    let entries = generate_among(100_000, 42, 5000);
    let expected = model(&entries);
    for workers in [1, 2, 4] {
        let env = TestEnv::new();
        env.push(&entries).await;
        let mut cfg = env.config(workers);
        cfg.batch_size = std::env::var("PROBE_BATCH")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(1000);
        cfg.claim_idle = std::time::Duration::from_secs(30);
        let started = std::time::Instant::now();
        let summary = skyhose_index::run(cfg, CancellationToken::new())
            .await
            .expect("run");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{workers} workers: {} events in {secs:.1}s = {:.0} events/s",
            summary.events_indexed,
            summary.events_indexed as f64 / secs
        );
        let pool = env.pool().await;
        let actual = serde_json::to_value(skyhose_index::snapshot(&pool).await.expect("snapshot"))
            .expect("json");
        assert!(actual == expected, "{}", diff(&expected, &actual));
        env.cleanup().await;
    }
}
