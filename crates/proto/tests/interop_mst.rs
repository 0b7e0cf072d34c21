//! The official MST and commit-proof interop fixtures.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value as Json;
use skyhose_proto::frame::{OpAction, RepoOp};
use skyhose_proto::mst::{common_prefix_len, invert_ops, key_height, walk, Mst};
use skyhose_proto::Cid;

fn fixture(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/atproto-interop")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &str) -> Vec<Json> {
    serde_json::from_str(&fixture(path)).unwrap()
}

#[test]
fn key_heights_match() {
    for case in json("mst/key_heights.json") {
        let key = case["key"].as_str().unwrap();
        assert_eq!(
            key_height(key) as u64,
            case["height"].as_u64().unwrap(),
            "{key:?}"
        );
    }
}

#[test]
fn common_prefixes_match() {
    for case in json("mst/common_prefix.json") {
        let (l, r) = (
            case["left"].as_str().unwrap(),
            case["right"].as_str().unwrap(),
        );
        assert_eq!(
            common_prefix_len(l.as_bytes(), r.as_bytes()) as u64,
            case["len"].as_u64().unwrap(),
            "{l:?} {r:?}"
        );
    }
}

#[test]
fn example_keys_walk_back_in_order() {
    let keys: Vec<String> = fixture("mst/example_keys.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let leaf = Cid::for_raw(b"leaf");
    let mut mst = Mst::new();
    for key in keys.iter().rev() {
        mst.insert(key.clone(), leaf);
    }
    let root = mst.root();
    let blocks: HashMap<Cid, Vec<u8>> = mst.blocks().into_iter().collect();
    let walked = walk(&root, &blocks).unwrap();
    let mut sorted = keys.clone();
    sorted.sort();
    let walked_keys: Vec<String> = walked.into_iter().map(|(k, _)| k).collect();
    assert_eq!(walked_keys, sorted);
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

#[test]
fn commit_proofs_carry_what_inversion_needs() {
    for case in json("firehose/commit-proof-fixtures.json") {
        let name = case["comment"].as_str().unwrap();
        let strs = |field: &str| -> Vec<String> {
            case[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let leaf = Cid::parse(case["leafValue"].as_str().unwrap()).unwrap();
        let mut mst = Mst::new();
        for key in strs("keys") {
            mst.insert(key, leaf);
        }
        let before = mst.root();
        assert_eq!(before.to_string(), case["rootBeforeCommit"], "{name}");
        let old_blocks: HashMap<Cid, Vec<u8>> = mst.blocks().into_iter().collect();
        let (adds, dels) = (strs("adds"), strs("dels"));
        for key in &adds {
            mst.insert(key.clone(), leaf);
        }
        for key in &dels {
            mst.remove(key);
        }
        let after = mst.root();
        assert_eq!(after.to_string(), case["rootAfterCommit"], "{name}");

        let changed: Vec<&str> = adds.iter().chain(&dels).map(String::as_str).collect();
        let proof: HashMap<Cid, Vec<u8>> = mst
            .commit_blocks(changed.iter().copied())
            .into_iter()
            .collect();
        for cid in strs("blocksInProof") {
            assert!(
                proof.contains_key(&Cid::parse(&cid).unwrap()),
                "{name}: proof lacks {cid}"
            );
        }
        for (cid, _) in mst.blocks() {
            assert!(
                old_blocks.contains_key(&cid) || proof.contains_key(&cid),
                "{name}: new node {cid} not in the commit's blocks"
            );
        }

        let ops: Vec<RepoOp> = adds
            .iter()
            .map(|k| RepoOp {
                action: OpAction::Create,
                path: k.clone(),
                cid: Some(leaf),
                prev: None,
            })
            .chain(dels.iter().map(|k| RepoOp {
                action: OpAction::Delete,
                path: k.clone(),
                cid: None,
                prev: Some(leaf),
            }))
            .collect();
        for order in permutations(&ops) {
            assert_eq!(
                invert_ops(&after, &order, &proof).unwrap(),
                before,
                "{name}: {order:?}"
            );
        }
    }
}
