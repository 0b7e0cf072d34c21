//! The ingest loop against the simulated relay and the real Redis.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;
use skyhose_ingest::{run, CancellationToken, IngestConfig, IngestSummary};
use skyhose_proto::cbor::{decode_prefix, Value};
use skyhose_proto::frame::decode_frame_parts;
use skyhose_sim::relay::{self, Faults, RelayConfig, RelayHandle};
use skyhose_sim::{Network, SimConfig};

use common::{cleanup, read_all, redis, unique_prefix, Entry};

fn sim(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        accounts: 200,
        ..SimConfig::default()
    }
}

async fn start_relay(seed: u64, total: u64, faults: Faults) -> RelayHandle {
    let handle = relay::start(RelayConfig {
        sim: sim(seed),
        total: Some(total),
        window: total as usize + 10,
        faults,
        ..RelayConfig::default()
    })
    .await
    .expect("relay starts");
    handle.wait_for_head(total as i64).await;
    handle
}

fn config(prefix: &str, relay: &RelayHandle) -> IngestConfig {
    common::config(prefix, relay.url())
}

/// The data model value as JSON, written independently of the crate's writer.
fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::json;
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => json!(b),
        Value::Integer(i) => json!(i),
        Value::String(s) => json!(s),
        Value::Bytes(b) => json!({"$bytes": data_encoding::BASE64_NOPAD.encode(b)}),
        Value::Link(c) => json!({"$link": c.to_string()}),
        Value::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// What the stream must hold for the sim's first `total` frames, by seq:
/// the entry type and the data JSON.
fn expected(seed: u64, total: u64) -> BTreeMap<i64, (String, serde_json::Value)> {
    let mut net = Network::new(sim(seed));
    let mut out = BTreeMap::new();
    for _ in 0..total {
        let (seq, frame) = net.next_frame();
        let (header, body) = decode_frame_parts(&frame).expect("sim frames decode");
        let t = header.get("t").and_then(Value::as_str).unwrap_or_default();
        let s = |k: &str| body.get(k).map(to_json).unwrap_or(serde_json::Value::Null);
        let (kind, data) = match t {
            "#commit" => {
                let Some(Value::Bytes(car)) = body.get("blocks") else {
                    panic!("commit without blocks")
                };
                let (_, blocks) = skyhose_proto::car::read_car(car).expect("car");
                let Some(Value::List(ops)) = body.get("ops") else {
                    panic!("commit without ops")
                };
                let ops: Vec<serde_json::Value> = ops
                    .iter()
                    .map(|op| {
                        let action = op.get("action").and_then(Value::as_str).unwrap_or_default();
                        let mut o = serde_json::json!({"action": action, "path": to_json(op.get("path").unwrap_or(&Value::Null))});
                        if action != "delete" {
                            let Some(Value::Link(cid)) = op.get("cid") else { panic!("op without cid") };
                            o["cid"] = serde_json::json!(cid.to_string());
                            let block = blocks.iter().find(|(c, _)| c == cid).expect("record block");
                            o["record"] = to_json(&decode_prefix(&block.1).expect("record").0);
                        }
                        o
                    })
                    .collect();
                let commit = match body.get("commit") {
                    Some(Value::Link(c)) => serde_json::json!(c.to_string()),
                    _ => serde_json::Value::Null,
                };
                let prev_data = match body.get("prevData") {
                    Some(Value::Link(c)) => serde_json::json!(c.to_string()),
                    _ => serde_json::Value::Null,
                };
                let data_root = match body.get("commit") {
                    Some(Value::Link(cid)) => blocks
                        .iter()
                        .find(|(c, _)| c == cid)
                        .and_then(|(_, block)| skyhose_proto::repo::Commit::decode(block).ok())
                        .map(|c| serde_json::json!(c.data.to_string()))
                        .unwrap_or_default(),
                    _ => serde_json::Value::Null,
                };
                let mut data = serde_json::json!({"repo": s("repo"), "ops": ops, "rev": s("rev"),
                    "since": s("since"), "time": s("time"), "commit": commit,
                    "prevData": prev_data, "data": data_root});
                if body.get("tooBig") == Some(&Value::Bool(true)) {
                    data["tooBig"] = serde_json::json!(true);
                }
                ("commit", data)
            }
            "#identity" => (
                "identity",
                serde_json::json!({"did": s("did"), "handle": s("handle"), "time": s("time")}),
            ),
            "#account" => {
                let mut d =
                    serde_json::json!({"did": s("did"), "active": s("active"), "time": s("time")});
                if let Some(status) = body.get("status").filter(|v| !matches!(v, Value::Null)) {
                    d["status"] = to_json(status);
                }
                ("account", d)
            }
            "#sync" => {
                let Some(Value::Bytes(car)) = body.get("blocks") else {
                    panic!("sync without blocks")
                };
                let (roots, _) = skyhose_proto::car::read_car(car).expect("car");
                let root = roots
                    .first()
                    .map(|c| serde_json::json!(c.to_string()))
                    .unwrap_or_default();
                (
                    "sync",
                    serde_json::json!({"did": s("did"), "rev": s("rev"), "commit": root, "time": s("time")}),
                )
            }
            other => panic!("unexpected sim frame type {other}"),
        };
        out.insert(seq, (kind.to_owned(), data));
    }
    out
}

/// Every entry in order: fields `type, data, seq`, seqs strictly increasing,
/// data equal to what the simulator sent.
fn assert_stream_matches(entries: &[Entry], expected: &BTreeMap<i64, (String, serde_json::Value)>) {
    assert_eq!(entries.len(), expected.len(), "entry count");
    for ((id, fields), (seq, (kind, data))) in entries.iter().zip(expected) {
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["type", "data", "seq"], "fields of {id}");
        assert_eq!(fields[0].1, *kind, "type of {id}");
        assert_eq!(fields[2].1, seq.to_string(), "seq of {id}");
        let got: serde_json::Value = serde_json::from_str(&fields[1].1).expect("data is JSON");
        assert_eq!(&got, data, "data of seq {seq}");
    }
}

async fn ingest_until_done(cfg: IngestConfig) -> IngestSummary {
    let token = CancellationToken::new();
    tokio::time::timeout(Duration::from_secs(120), run(cfg, token))
        .await
        .expect("ingest finishes in time")
        .expect("ingest succeeds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_becomes_exactly_one_entry() {
    const N: u64 = 3000;
    let prefix = unique_prefix("exact");
    let relay = start_relay(11, N, Faults::default()).await;
    let mut cfg = config(&prefix, &relay);
    cfg.stop_after = Some(N);
    let summary = ingest_until_done(cfg.clone()).await;
    assert_eq!(summary.events_written, N);
    assert_eq!(summary.cursor, Some(N as i64));
    let entries = read_all(&cfg.stream_key).await;
    assert_stream_matches(&entries, &expected(11, N));

    // A restart resumes from the cursor: nothing is written twice.
    cfg.cursor_override = None;
    cfg.stop_after = None;
    let token = CancellationToken::new();
    let task = tokio::spawn(run(cfg.clone(), token.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel();
    let again = task.await.expect("task").expect("ingest");
    assert_eq!(again.events_written, 0);
    assert_eq!(read_all(&cfg.stream_key).await.len() as u64, N);
    let mut conn = redis().await;
    let status: String = conn.get(&cfg.status_key).await.expect("status key");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["cursor"], serde_json::json!(N));
    relay.shutdown().await;
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_malformed_frames_lose_nothing() {
    const N: u64 = 3000;
    let prefix = unique_prefix("faults");
    let faults = Faults {
        drop_every: Some(700),
        malformed_rate: 0.01,
        ..Faults::default()
    };
    let relay = start_relay(12, N, faults).await;
    let mut cfg = config(&prefix, &relay);
    cfg.stop_after = Some(N);
    let summary = ingest_until_done(cfg.clone()).await;
    assert_eq!(summary.events_written, N);
    assert!(summary.reconnects >= 3, "{summary:?}");
    assert!(summary.decode_errors > 0, "{summary:?}");
    let entries = read_all(&cfg.stream_key).await;
    assert_stream_matches(&entries, &expected(12, N));
    relay.shutdown().await;
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_stops_reading_loses_nothing() {
    const N: u64 = 3000;
    const MAX_LEN: u64 = 1000;
    let prefix = unique_prefix("group");
    let relay = start_relay(13, N, Faults::default()).await;
    let mut cfg = config(&prefix, &relay);
    cfg.max_stream_len = MAX_LEN;
    let (stream, group) = (cfg.stream_key.clone(), cfg.group.clone());
    let token = CancellationToken::new();
    let task = tokio::spawn(run(cfg, token.clone()));

    let mut conn = redis().await;
    let mut seqs: Vec<i64> = Vec::new();
    let read = |conn: &mut redis::aio::MultiplexedConnection, count: usize| {
        let (stream, group) = (stream.clone(), group.clone());
        let mut conn = conn.clone();
        async move {
            let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg("reader")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(2000)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            let mut got = Vec::new();
            for key in reply.keys {
                for id in key.ids {
                    let seq: String = id.get("seq").expect("seq field");
                    got.push(seq.parse::<i64>().expect("numeric seq"));
                    let _: i64 = conn.xack(&stream, &group, &[&id.id]).await.expect("ack");
                }
            }
            got
        }
    };
    // Read a little, then stop: ingest must pause instead of trimming unread entries.
    while seqs.len() < 300 {
        seqs.extend(read(&mut conn, 300 - seqs.len()).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cursor: Option<i64> = conn.get(format!("{prefix}:cursor")).await.expect("cursor");
    assert!(
        cursor.unwrap_or(0) < N as i64,
        "ingest kept reading: cursor {cursor:?}"
    );
    let len: u64 = conn.xlen(&stream).await.expect("xlen");
    assert!(len >= MAX_LEN, "stream length {len}");

    // Resume: the group gets every event exactly once, in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (seqs.len() as u64) < N && tokio::time::Instant::now() < deadline {
        seqs.extend(read(&mut conn, 500).await);
    }
    assert_eq!(seqs, (1..=N as i64).collect::<Vec<_>>());
    token.cancel();
    let summary = task.await.expect("task").expect("ingest");
    assert!(summary.backpressure_pauses >= 1, "{summary:?}");
    relay.shutdown().await;
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outdated_cursor_is_an_info_entry_and_future_cursor_reconnects() {
    let prefix = unique_prefix("cursors");
    let relay = relay::start(RelayConfig {
        sim: sim(14),
        total: Some(2000),
        window: 500,
        ..RelayConfig::default()
    })
    .await
    .expect("relay starts");
    relay.wait_for_head(2000).await;
    let mut cfg = config(&prefix, &relay);
    cfg.cursor_override = Some(10);
    cfg.stop_after = Some(500);
    let summary = ingest_until_done(cfg.clone()).await;
    assert_eq!(summary.events_written, 500);
    let entries = read_all(&cfg.stream_key).await;
    assert_eq!(entries.len(), 501);
    let (_, info) = &entries[0];
    assert_eq!(info[0].1, "info");
    let data: serde_json::Value = serde_json::from_str(&info[1].1).expect("JSON");
    assert_eq!(data["name"], "OutdatedCursor");
    assert_eq!(info[2].1, "10", "an info entry repeats the seq before it");
    let seqs: Vec<String> = entries[1..].iter().map(|(_, f)| f[2].1.clone()).collect();
    assert_eq!(
        seqs,
        (1501..=2000).map(|s| s.to_string()).collect::<Vec<_>>()
    );

    let ahead_prefix = unique_prefix("future");
    let mut ahead = config(&ahead_prefix, &relay);
    ahead.cursor_override = Some(9000);
    let token = CancellationToken::new();
    let task = tokio::spawn(run(ahead, token.clone()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    token.cancel();
    let summary = task.await.expect("task").expect("ingest");
    assert!(summary.reconnects >= 1, "{summary:?}");
    assert_eq!(summary.events_written, 0);
    relay.shutdown().await;
    cleanup(&prefix).await;
    cleanup(&ahead_prefix).await;
}

/// Ingest for `secs` against a relay that has sent its 50 events and then
/// nothing; the reconnects it made.
async fn reconnects_to_a_quiet_relay(prefix: &str, ping_interval: Duration) -> u64 {
    cleanup(prefix).await;
    let relay = start_relay(31, 50, Faults::default()).await;
    let mut cfg = config(prefix, &relay);
    cfg.stall_timeout = Duration::from_millis(1_500);
    cfg.ping_interval = ping_interval;
    let stop = CancellationToken::new();
    let ingest = tokio::spawn(run(cfg, stop.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    let summary = ingest.await.expect("ingest task").expect("ingest");
    assert_eq!(summary.events_written, 50);
    relay.shutdown().await;
    cleanup(prefix).await;
    summary.reconnects
}

/// A relay with nothing to send that answers pings stays connected; one that
/// is not pinged is taken for stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_relay_that_answers_pings_is_not_reconnected() {
    let pinged =
        reconnects_to_a_quiet_relay(&unique_prefix("quiet-pinged"), Duration::from_millis(300))
            .await;
    assert_eq!(pinged, 0, "a quiet relay answering pings was reconnected");
    let unpinged =
        reconnects_to_a_quiet_relay(&unique_prefix("quiet-unpinged"), Duration::from_secs(3600))
            .await;
    assert!(unpinged >= 1, "the stall check did not fire without pings");
}
