//! The simulator's network through the stream into the index: the snapshot
//! must equal the simulator's ground truth exactly, in order, shuffled across
//! workers and replayed.
//!
//! Entries are built here from the simulator's events in the stream format
//! (docs/stream-format.md), the same mapping ingest performs on frames.

mod common;

use std::collections::HashMap;

use common::{diff, Entry, Rng, TestEnv};
use data_encoding::BASE64_NOPAD;
use serde_json::{json, Map, Value};
use skyhose_sim::wire::{self, Event};
use skyhose_sim::{Network, SimConfig};
use tokio_util::sync::CancellationToken;

fn to_json(value: &wire::Value) -> Value {
    match value {
        wire::Value::Null => Value::Null,
        wire::Value::Bool(b) => json!(b),
        wire::Value::Integer(i) => json!(i),
        wire::Value::String(s) => json!(s),
        wire::Value::Bytes(bytes) => json!({"$bytes": BASE64_NOPAD.encode(bytes)}),
        wire::Value::Link(cid) => json!({"$link": cid.to_string()}),
        wire::Value::List(items) => Value::Array(items.iter().map(to_json).collect()),
        wire::Value::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

fn entry(event: &Event) -> Option<Entry> {
    match event {
        Event::Commit(commit) => {
            let (_, blocks) = wire::read_car(&commit.blocks).expect("simulated CAR");
            let blocks: HashMap<String, Vec<u8>> = blocks
                .into_iter()
                .map(|(cid, data)| (cid.to_string(), data))
                .collect();
            let ops: Vec<Value> = commit
                .ops
                .iter()
                .map(|op| {
                    let mut out = json!({"action": op.action.as_str(), "path": op.path});
                    if let Some(cid) = op.cid {
                        let cid = cid.to_string();
                        let block = blocks.get(&cid).expect("record block in the CAR");
                        let (record, _) = wire::decode_prefix(block).expect("record DAG-CBOR");
                        out["cid"] = json!(cid);
                        out["record"] = to_json(&record);
                    }
                    out
                })
                .collect();
            let data = json!({"repo": commit.repo, "ops": ops, "rev": commit.rev, "since": commit.since,
                              "time": commit.time, "commit": commit.commit.to_string()});
            Some(Entry::new("commit", &data, commit.seq))
        }
        Event::Identity(identity) => Some(Entry::new(
            "identity",
            &json!({"did": identity.did, "handle": identity.handle, "time": identity.time}),
            identity.seq,
        )),
        Event::Account(account) => Some(Entry::new(
            "account",
            &json!({"did": account.did, "active": account.active, "status": account.status, "time": account.time}),
            account.seq,
        )),
        Event::Sync(sync) => Some(Entry::new(
            "sync",
            &json!({"did": sync.did, "rev": sync.rev, "time": sync.time}),
            sync.seq,
        )),
        Event::Info(_) | Event::Error(_) => None,
    }
}

fn simulate(n: usize, seed: u64, accounts: usize) -> (Vec<Entry>, Value) {
    let mut network = Network::new(SimConfig {
        seed,
        accounts,
        ..SimConfig::default()
    });
    let entries = (0..n)
        .filter_map(|_| entry(&network.next_event()))
        .collect();
    let truth = serde_json::to_value(network.truth()).expect("truth json");
    (entries, truth)
}

async fn index(env: &TestEnv, workers: usize) -> Value {
    let mut cfg = env.config(workers);
    cfg.batch_size = 1000;
    // Nobody dies here; a long idle time avoids needless takeovers of slow batches.
    cfg.claim_idle = std::time::Duration::from_secs(30);
    let summary = skyhose_index::run(cfg, CancellationToken::new())
        .await
        .expect("index run");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    let pool = env.pool().await;
    serde_json::to_value(skyhose_index::snapshot(&pool).await.expect("snapshot"))
        .expect("snapshot json")
}

/// The per-actor counts of lists, feed generators, starter packs and labeler
/// services that the index keeps equal a recount of the live rows, and the
/// profile fields in actor rows equal the profiles.
async fn assert_association_counts(env: &TestEnv) {
    let pool = env.pool().await;
    let client = pool.get().await.expect("connection");
    let mut checked = 0;
    for (table, column) in [
        ("lists", "lists"),
        ("feed_generators", "feedgens"),
        ("starter_packs", "starter_packs"),
        ("labeler_services", "labelers"),
    ] {
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE COALESCE(x.n, 0) <> COALESCE(c.{column}, 0)) \
             FROM (SELECT did, count(*) AS n FROM {table} GROUP BY did) x \
             FULL JOIN actors c USING (did)"
        );
        let row = client.query_one(sql.as_str(), &[]).await.expect(&sql);
        let wrong: i64 = row.get(1);
        assert_eq!(
            wrong, 0,
            "actors.{column} differs from {table} for {wrong} actors"
        );
        checked += row.get::<_, i64>(0);
    }
    assert!(checked > 0);

    common::assert_actor_rows_mirror_records(&pool).await;
}

/// Every live record reads back as the text its last write carried:
/// byte for byte where the index stores the text (likes, reposts and
/// follows, whether kept or rebuilt from their columns, and posts), as
/// the same JSON where it keeps `jsonb`. Most likes, reposts and follows
/// must be rebuilt.
async fn assert_records_as_written(env: &TestEnv, entries: &[Entry]) {
    let mut written: HashMap<String, String> = HashMap::new();
    for entry in entries {
        let [(_, kind), (_, data), _] = &entry.fields[..] else {
            continue;
        };
        if kind != "commit" {
            continue;
        }
        let data: Value = serde_json::from_str(data).expect("entry JSON");
        let repo = data["repo"].as_str().expect("repo");
        for op in data["ops"].as_array().expect("ops") {
            let uri = format!("at://{repo}/{}", op["path"].as_str().expect("path"));
            match op.get("record") {
                Some(record) => written.insert(uri, record.to_string()),
                None => written.remove(&uri),
            };
        }
    }
    let pool = env.pool().await;
    let client = pool.get().await.expect("connection");
    let rows = client
        .query(
            "SELECT uri, collection, record::text FROM all_records WHERE live",
            &[],
        )
        .await
        .expect("live records");
    let mut exact = 0;
    for row in &rows {
        let (uri, collection, text): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let expected = written
            .get(&uri)
            .unwrap_or_else(|| panic!("{uri} was never written"));
        if matches!(
            collection.as_str(),
            "app.bsky.feed.post"
                | "app.bsky.feed.like"
                | "app.bsky.feed.repost"
                | "app.bsky.graph.follow"
        ) {
            assert_eq!(&text, expected, "{uri}");
            exact += 1;
        } else {
            let stored: Value = serde_json::from_str(&text).expect("stored JSON");
            let expected: Value = serde_json::from_str(expected).expect("written JSON");
            assert_eq!(stored, expected, "{uri}");
        }
    }
    assert!(exact > 1000, "{exact} records compared as text");
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE record IS NULL), count(*) FROM like_rows WHERE live",
            &[],
        )
        .await
        .expect("like rows");
    let (rebuilt, likes): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        rebuilt * 10 > likes * 9,
        "{rebuilt} of {likes} live likes are rebuilt"
    );
    let vias = client
        .query_one(
            "SELECT count(*) FROM like_rows WHERE live AND record IS NULL AND via_actor IS NOT NULL",
            &[],
        )
        .await
        .expect("likes via reposts");
    assert!(vias.get::<_, i64>(0) > 0, "no rebuilt like with a via");
}

/// The size: 200k simulated events, two workers, exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_simulated_events_match_the_ground_truth() {
    let env = TestEnv::new();
    let (entries, truth) = simulate(200_000, 1, 2000);
    env.push(&entries).await;
    let actual = index(&env, 2).await;
    assert!(actual == truth, "{}", diff(&truth, &actual));
    assert_association_counts(&env).await;
    assert_records_as_written(&env, &entries).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_events_shuffled_and_replayed_across_four_workers_match_the_ground_truth() {
    let env = TestEnv::new();
    let (entries, truth) = simulate(5000, 7, 200);
    let mut shuffled = entries.clone();
    Rng::new(5).shuffle(&mut shuffled);
    shuffled.extend(entries.iter().cloned());
    env.push(&shuffled).await;
    let actual = index(&env, 4).await;
    assert!(actual == truth, "{}", diff(&truth, &actual));
    assert_association_counts(&env).await;
    env.cleanup().await;
}

/// Throughput on simulated events (the full benchmark is `skyhose bench index`):
/// `cargo test --release -p skyhose-index --test index_simulated -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn simulated_throughput_probe() {
    let (entries, truth) = simulate(300_000, 3, 20_000);
    for workers in [1, 2, 4] {
        let env = TestEnv::new();
        env.push(&entries).await;
        let started = std::time::Instant::now();
        let actual = index(&env, workers).await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{workers} workers: {} events in {secs:.1}s = {:.0} events/s",
            entries.len(),
            entries.len() as f64 / secs
        );
        assert!(actual == truth, "{}", diff(&truth, &actual));
        env.cleanup().await;
    }
}
