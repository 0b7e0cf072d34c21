//! Commit checks in the ingest loop, against the simulated relay, its PLC
//! directory and the real Redis: commits that do not verify become resync
//! requests, rotated keys are fetched again once, and relay order is kept
//! while keys resolve concurrently.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skyhose_identity::{IdentityConfig, KeyError, KeyFuture, KeySource, Resolver};
use skyhose_ingest::{run, CancellationToken, Compat, IngestConfig, IngestSummary, VerifyConfig};
use skyhose_proto::decode::{decode, Decoded};
use skyhose_proto::frame::Event;
use skyhose_proto::repo::verify_commit_event;
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::relay::{self, RelayConfig, RelayHandle};
use skyhose_sim::{Network, NetworkFaults, SimConfig};

use common::{cleanup, read_all, unique_prefix};

fn sim(seed: u64, bad_signature: f64) -> SimConfig {
    SimConfig {
        seed,
        accounts: 200,
        // The directory knows the accounts of the network's start only.
        join_probability: 0.0,
        faults: NetworkFaults {
            bad_signature,
            ..NetworkFaults::default()
        },
        ..SimConfig::default()
    }
}

async fn start_relay(sim: SimConfig, total: u64) -> RelayHandle {
    let handle = relay::start(RelayConfig {
        sim,
        total: Some(total),
        window: total as usize + 10,
        ..RelayConfig::default()
    })
    .await
    .expect("relay starts");
    handle.wait_for_head(total as i64).await;
    handle
}

/// Every entry: its seq, type and data.
async fn entries(stream: &str) -> Vec<(i64, String, serde_json::Value)> {
    read_all(stream)
        .await
        .into_iter()
        .map(|(_, fields)| {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (
                field("seq").parse().expect("seq"),
                field("type"),
                serde_json::from_str(&field("data")).expect("data is JSON"),
            )
        })
        .collect()
}

/// The sim's commits by seq: whether each verifies with its account's key,
/// and its `prevData`.
fn commits(sim: &SimConfig, total: u64) -> BTreeMap<i64, (String, bool, Option<String>)> {
    let mut net = Network::new(sim.clone());
    let mut out = BTreeMap::new();
    for _ in 0..total {
        let (seq, frame) = net.next_frame();
        if let Ok(Decoded::Event(Event::Commit(c))) = decode(&frame) {
            let key = plc::proto_signing_key(sim, &c.repo).public_key();
            let good = verify_commit_event(&c, &key).is_ok();
            out.insert(
                seq,
                (c.repo.clone(), good, c.prev_data.map(|p| p.to_string())),
            );
        }
    }
    out
}

fn config(prefix: &str, relay: &RelayHandle, keys: Arc<dyn KeySource>, total: u64) -> IngestConfig {
    let mut verify = VerifyConfig::new(keys);
    verify.max_in_flight = 64;
    verify.key_retry_for = Duration::from_millis(400);
    verify.key_retry_base = Duration::from_millis(20);
    IngestConfig {
        stop_after: Some(total),
        verify: Some(verify),
        ..common::config(prefix, relay.url())
    }
}

async fn ingest(cfg: IngestConfig) -> IngestSummary {
    tokio::time::timeout(Duration::from_secs(120), run(cfg, CancellationToken::new()))
        .await
        .expect("ingest finishes in time")
        .expect("ingest succeeds")
}

fn assert_in_relay_order(entries: &[(i64, String, serde_json::Value)], total: u64) {
    let seqs: Vec<i64> = entries.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "one entry per event, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_commits_become_resync_requests() {
    const N: u64 = 1500;
    let sim = sim(21, 0.05);
    let relay = start_relay(sim.clone(), N).await;
    let directory = plc::start(PlcConfig {
        sim: sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .expect("directory starts");
    let keys = Arc::new(Resolver::new(IdentityConfig::loopback(directory.url())));
    let prefix = unique_prefix("verify-forged");
    let cfg = config(&prefix, &relay, keys, N);
    let summary = ingest(cfg.clone()).await;

    let expected = commits(&sim, N);
    let forged = expected.values().filter(|(_, good, _)| !good).count() as u64;
    assert!(forged > 10, "the sim forged {forged} commits");
    let stream = entries(&cfg.stream_key).await;
    assert_in_relay_order(&stream, N);
    let mut resyncs = 0;
    for (seq, kind, data) in &stream {
        let Some((repo, good, prev_data)) = expected.get(seq) else {
            assert_ne!(kind, "commit", "seq {seq} was not a commit");
            assert!(data.get("reason").is_none(), "seq {seq}: {data}");
            continue;
        };
        if *good {
            assert_eq!(kind, "commit", "seq {seq}: {data}");
            assert_eq!(data["prevData"].as_str(), prev_data.as_deref(), "seq {seq}");
            assert!(data["data"].is_string(), "seq {seq}: {data}");
        } else {
            resyncs += 1;
            assert_eq!(kind, "sync", "seq {seq}: {data}");
            assert_eq!(data["reason"], "bad_signature", "seq {seq}");
            assert_eq!(data["did"].as_str(), Some(repo.as_str()));
            assert!(data["commit"].is_null());
        }
    }
    assert_eq!(resyncs, forged);
    assert_eq!(summary.commits_rejected, forged);
    assert_eq!(
        summary.commits_verified,
        expected.len() as u64 - forged,
        "every honest commit verified"
    );
    assert_eq!(summary.events_written, N);
    cleanup(&prefix).await;

    // For the seed system's readers, a rejected commit is only counted.
    let prefix = unique_prefix("verify-forged-seed");
    let keys = Arc::new(Resolver::new(IdentityConfig::loopback(directory.url())));
    // Seed entries leave out `#sync` events and, here, the forged commits.
    let mut net = Network::new(sim.clone());
    let syncs = (0..N)
        .filter(|_| {
            matches!(
                decode(&net.next_frame().1),
                Ok(Decoded::Event(Event::Sync(_)))
            )
        })
        .count() as u64;
    let mut cfg = config(&prefix, &relay, keys, N - syncs - forged);
    cfg.compat = Compat::Seed;
    let summary = ingest(cfg.clone()).await;
    let written = entries(&cfg.stream_key).await;
    let last = written.last().map_or(0, |(seq, _, _)| *seq);
    let forged_before_last = expected
        .range(..=last)
        .filter(|(_, (_, good, _))| !good)
        .count() as u64;
    assert_eq!(summary.commits_rejected, forged_before_last);
    assert!(written.iter().all(|(_, kind, _)| kind != "sync"));
    let commits_written = written
        .iter()
        .filter(|(_, kind, _)| kind == "commit")
        .count();
    assert_eq!(commits_written as u64, expected.len() as u64 - forged);
    relay.shutdown().await;
    directory.shutdown().await;
    cleanup(&prefix).await;
}

/// Keys of the sim's accounts; a DID not yet forgotten gets a stale key
/// first, as a resolver would after the account rotated its key. With
/// `rotates` false the stale key is all there is.
struct StaleKeys {
    sim: SimConfig,
    rotates: bool,
    forgotten: Mutex<HashSet<String>>,
    lookups: AtomicU64,
    forgets: AtomicU64,
}

impl StaleKeys {
    fn new(sim: &SimConfig, rotates: bool) -> Self {
        StaleKeys {
            sim: sim.clone(),
            rotates,
            forgotten: Mutex::new(HashSet::new()),
            lookups: AtomicU64::new(0),
            forgets: AtomicU64::new(0),
        }
    }
}

impl KeySource for StaleKeys {
    fn key<'a>(&'a self, did: &'a str) -> KeyFuture<'a> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let fresh = self.rotates && self.forgotten.lock().unwrap().contains(did);
        let sim = if fresh {
            self.sim.clone()
        } else {
            SimConfig {
                seed: self.sim.seed + 1000,
                ..self.sim.clone()
            }
        };
        let key = plc::proto_signing_key(&sim, did).public_key();
        Box::pin(std::future::ready(Ok(key)))
    }

    fn forget(&self, did: &str) -> bool {
        self.forgets.fetch_add(1, Ordering::Relaxed);
        self.forgotten.lock().unwrap().insert(did.to_owned());
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_signature_is_checked_again_once_with_a_fresh_key() {
    const N: u64 = 600;
    let sim = sim(22, 0.0);
    let relay = start_relay(sim.clone(), N).await;
    let commit_count = commits(&sim, N).len() as u64;

    // The account rotated its key: the fresh one verifies.
    let rotated = Arc::new(StaleKeys::new(&sim, true));
    let prefix = unique_prefix("verify-rotated");
    let summary = ingest(config(&prefix, &relay, rotated.clone(), N)).await;
    assert_eq!(summary.commits_rejected, 0);
    assert_eq!(summary.commits_verified, commit_count);
    let forgets = rotated.forgets.load(Ordering::Relaxed);
    assert!(
        forgets > 0 && forgets <= commit_count,
        "{forgets} keys forgotten"
    );
    cleanup(&prefix).await;

    // The key never verifies: each commit asks twice, then is rejected.
    let stale = Arc::new(StaleKeys::new(&sim, false));
    let prefix = unique_prefix("verify-stale");
    let cfg = config(&prefix, &relay, stale.clone(), N);
    let summary = ingest(cfg.clone()).await;
    assert_eq!(summary.commits_rejected, commit_count);
    assert_eq!(stale.lookups.load(Ordering::Relaxed), 2 * commit_count);
    assert_eq!(stale.forgets.load(Ordering::Relaxed), commit_count);
    let stream = entries(&cfg.stream_key).await;
    assert!(stream.iter().all(|(_, kind, _)| kind != "commit"));
    relay.shutdown().await;
    cleanup(&prefix).await;
}

/// The sim's keys, each answered after a delay that differs by DID and
/// lookup, and never for `unavailable` DIDs (a directory that keeps failing).
struct SlowKeys {
    sim: SimConfig,
    unavailable: HashSet<String>,
    lookups: AtomicU64,
}

impl KeySource for SlowKeys {
    fn key<'a>(&'a self, did: &'a str) -> KeyFuture<'a> {
        let n = self.lookups.fetch_add(1, Ordering::Relaxed);
        let spread = did
            .bytes()
            .fold(n, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(spread % 15)).await;
            if self.unavailable.contains(did) {
                return Err(KeyError::Transient {
                    did: did.to_owned(),
                    problem: "directory answered 503".into(),
                });
            }
            Ok(plc::proto_signing_key(&self.sim, did).public_key())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_order_is_kept_while_keys_resolve_concurrently() {
    const N: u64 = 1200;
    let sim = sim(23, 0.0);
    let relay = start_relay(sim.clone(), N).await;
    let expected = commits(&sim, N);
    // Two accounts whose keys cannot be had: their commits become resync
    // requests after the bounded retry, and the rest flows meanwhile.
    let mut repos: Vec<&String> = expected.values().map(|(repo, _, _)| repo).collect();
    repos.sort();
    repos.dedup();
    let unavailable: HashSet<String> = repos.iter().take(2).map(|r| (*r).clone()).collect();
    let keys = Arc::new(SlowKeys {
        sim: sim.clone(),
        unavailable: unavailable.clone(),
        lookups: AtomicU64::new(0),
    });
    let prefix = unique_prefix("verify-order");
    let cfg = config(&prefix, &relay, keys, N);
    let started = Instant::now();
    let summary = ingest(cfg.clone()).await;
    let elapsed = started.elapsed();

    let stream = entries(&cfg.stream_key).await;
    assert_in_relay_order(&stream, N);
    let mut unavailable_commits = 0;
    for (seq, kind, data) in &stream {
        let Some((repo, _, _)) = expected.get(seq) else {
            continue;
        };
        if unavailable.contains(repo) {
            unavailable_commits += 1;
            assert_eq!(kind, "sync", "seq {seq}: {data}");
            assert_eq!(data["reason"], "key_unavailable");
        } else {
            assert_eq!(kind, "commit", "seq {seq}: {data}");
        }
    }
    assert!(unavailable_commits > 0);
    assert_eq!(summary.commits_rejected, unavailable_commits);
    assert_eq!(
        summary.commits_verified,
        expected.len() as u64 - unavailable_commits
    );
    // Each unavailable account held the relay back once, for its retry
    // period, not once per commit.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    relay.shutdown().await;
    cleanup(&prefix).await;
}

/// Prints ingest's events/s over the simulated relay with the checks off and
/// on (keys from the simulated directory through the resolver). Run with
/// `--ignored --nocapture`; `VERIFY_BENCH_EVENTS` sets the event count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_with_and_without_checks() {
    let total: u64 = std::env::var("VERIFY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let sim = SimConfig {
        accounts: 2000,
        ..sim(24, 0.0)
    };
    let relay = start_relay(sim.clone(), total).await;
    let directory = plc::start(PlcConfig {
        sim: sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .expect("directory starts");
    // What one commit's checks cost on this build, without the loop.
    let mut net = Network::new(sim.clone());
    let sample: Vec<_> = (0..2000)
        .filter_map(|_| match decode(&net.next_frame().1) {
            Ok(Decoded::Event(Event::Commit(c))) => Some(c),
            _ => None,
        })
        .collect();
    let keys: Vec<_> = sample
        .iter()
        .map(|c| plc::proto_signing_key(&sim, &c.repo).public_key())
        .collect();
    // CPU time, not wall time: the machine may be busy with other work.
    let started = process_cpu_secs();
    for (c, key) in sample.iter().zip(&keys) {
        assert!(verify_commit_event(c, key).is_ok());
    }
    let full = (process_cpu_secs() - started) / sample.len() as f64;
    let started = process_cpu_secs();
    for (c, key) in sample.iter().zip(&keys) {
        let block = skyhose_proto::car::find_block(&c.blocks, &c.commit)
            .ok()
            .flatten()
            .expect("commit block");
        let commit = skyhose_proto::repo::Commit::decode(block).expect("commit");
        assert!(commit.verify(key));
    }
    let signature = (process_cpu_secs() - started) / sample.len() as f64;
    println!(
        "per commit (cpu): all checks {:.0} us, of which the signature {:.0} us",
        full * 1e6,
        signature * 1e6
    );
    for checked in [false, true, false, true] {
        let prefix = unique_prefix("verify-bench");
        let keys = Arc::new(Resolver::new(IdentityConfig::loopback(directory.url())));
        let mut cfg = config(&prefix, &relay, keys, total);
        cfg.batch_max = 1000;
        cfg.max_stream_len = total * 2;
        match &mut cfg.verify {
            Some(verify) if checked => verify.max_in_flight = 512,
            _ => cfg.verify = None,
        }
        let (started, cpu_before) = (Instant::now(), process_cpu_secs());
        let summary = ingest(cfg).await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "checks {}: {} events in {secs:.2}s = {:.0} events/s, {:.1} cpu-s in this process ({} commits verified)",
            if checked { "on " } else { "off" },
            summary.events_written,
            summary.events_written as f64 / secs,
            process_cpu_secs() - cpu_before,
            summary.commits_verified
        );
        cleanup(&prefix).await;
    }
    relay.shutdown().await;
    directory.shutdown().await;
}

/// CPU time this process has used (user and system), from /proc.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
