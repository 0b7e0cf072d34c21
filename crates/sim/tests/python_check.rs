//! Independent check: the `atproto` Python SDK decodes every frame and CAR the
//! relay serves, and its counts agree with our own decoder's.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value as Json};
use skyhose_sim::relay::{self, RelayConfig};
use skyhose_sim::wire::{self, Value};
use skyhose_sim::{generate, SimConfig};

const EVENTS: usize = 2000;

fn our_counts(frames: &[Vec<u8>]) -> Json {
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut collections: BTreeMap<String, u64> = BTreeMap::new();
    let mut actions: BTreeMap<String, u64> = BTreeMap::new();
    let mut record_types: BTreeMap<String, u64> = BTreeMap::new();
    for frame in frames {
        let (t, body) = common::parts(frame);
        *types.entry(t.clone()).or_default() += 1;
        if t != "#commit" {
            continue;
        }
        let Some(Value::Bytes(car)) = body.get("blocks") else {
            panic!("commit without blocks")
        };
        let blocks: BTreeMap<_, _> = wire::read_car(car).unwrap().1.into_iter().collect();
        let Some(Value::List(ops)) = body.get("ops") else {
            panic!("commit without ops")
        };
        for op in ops {
            let path = op.get("path").and_then(Value::as_str).unwrap();
            *collections
                .entry(path.split('/').next().unwrap().to_owned())
                .or_default() += 1;
            *actions
                .entry(op.get("action").and_then(Value::as_str).unwrap().to_owned())
                .or_default() += 1;
            if let Some(Value::Link(cid)) = op.get("cid") {
                let (record, _) = wire::decode_prefix(&blocks[cid]).unwrap();
                let t = record.get("$type").and_then(Value::as_str).unwrap_or("?");
                *record_types.entry(t.to_owned()).or_default() += 1;
            }
        }
    }
    json!({"events": frames.len(), "types": types, "collections": collections, "actions": actions,
           "record_types": record_types, "problems": []})
}

#[tokio::test]
async fn atproto_python_sdk_agrees_with_our_decoder() {
    let probe = Command::new("python3")
        .args(["-c", "import atproto"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        _ => panic!("python3 cannot import the atproto package: run `pip install atproto`"),
    }
    let sim = SimConfig {
        seed: 5,
        accounts: 150,
        ..SimConfig::default()
    };
    let relay = relay::start(RelayConfig {
        sim: sim.clone(),
        total: Some(EVENTS as u64),
        ..RelayConfig::default()
    })
    .await
    .unwrap();
    relay.wait_for_head(EVENTS as i64).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/firehose_check.py");
    let url = relay.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([script, &url, &EVENTS.to_string()])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    relay.shutdown().await;
    assert!(
        out.status.success(),
        "firehose_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Json = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let (frames, _) = generate(&sim, EVENTS);
    assert_eq!(theirs, our_counts(&frames));
}
