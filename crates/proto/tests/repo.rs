//! Repositories end to end: MST builds and edits, verified reads of repo
//! CARs, and the checks of a firehose commit, with each way of being wrong.

use std::collections::HashMap;

use skyhose_proto::car::{read_car, write_car};
use skyhose_proto::cbor::{encode, Value};
use skyhose_proto::crypto::{Curve, SigningKey};
use skyhose_proto::frame::{self, OpAction, RepoOp};
use skyhose_proto::mst::{invert_ops, key_height, walk, Mst};
use skyhose_proto::repo::{
    read_repo, verify_commit_event, write_repo_car, Commit, RepoError, RepoLimits,
};
use skyhose_proto::Cid;

const DID: &str = "did:plc:abcdefghijklmnopqrstuvwx";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn key(i: usize) -> String {
    let collection = [
        "app.bsky.feed.post",
        "app.bsky.feed.like",
        "app.bsky.graph.follow",
    ][i % 3];
    format!("{collection}/3k{i:011}")
}

fn record(i: usize) -> (Cid, Vec<u8>) {
    let block = encode(&Value::map([
        ("$type", Value::from("app.bsky.feed.post")),
        ("text", Value::from(format!("record {i}"))),
        ("createdAt", Value::from("2024-01-01T00:00:00.000Z")),
    ]));
    (Cid::for_dag_cbor(&block), block)
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(Curve::K256, &[seed; 32]).unwrap()
}

/// A repo of `n` records: its CAR, and the parts to tamper with.
struct Built {
    mst: Mst,
    records: HashMap<Cid, Vec<u8>>,
    commit_cid: Cid,
    commit_block: Vec<u8>,
}

fn build(n: usize, key_seed: u8) -> Built {
    let mut mst = Mst::new();
    let mut records = HashMap::new();
    for i in 0..n {
        let (cid, block) = record(i);
        mst.insert(key(i), cid);
        records.insert(cid, block);
    }
    let data = mst.root();
    let (commit_cid, commit_block, _) =
        Commit::signed(DID, data, "3kaaaaaaaaaa2", None, &signing_key(key_seed));
    Built {
        mst,
        records,
        commit_cid,
        commit_block,
    }
}

impl Built {
    fn car(&mut self) -> Vec<u8> {
        write_repo_car(
            self.commit_cid,
            &self.commit_block,
            &mut self.mst,
            self.records.iter().map(|(c, b)| (*c, b.as_slice())),
        )
    }
}

fn rewrite(car: &[u8], f: impl FnOnce(&mut Vec<(Cid, Vec<u8>)>)) -> Vec<u8> {
    let (roots, mut blocks) = read_car(car).unwrap();
    f(&mut blocks);
    write_car(&roots, &blocks)
}

#[test]
fn insertion_order_does_not_change_the_root() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut keys: Vec<String> = (0..500).map(key).collect();
    let value = Cid::for_raw(b"v");
    let mut sorted = Mst::new();
    for k in &keys {
        sorted.insert(k.clone(), value);
    }
    for _ in 0..3 {
        for i in (1..keys.len()).rev() {
            keys.swap(i, rng.below(i + 1));
        }
        let mut shuffled = Mst::new();
        for k in &keys {
            shuffled.insert(k.clone(), value);
        }
        assert_eq!(shuffled.root(), sorted.root());
        assert_eq!(shuffled.len(), 500);
    }
}

#[test]
fn edits_give_the_root_of_a_fresh_build() {
    let mut rng = Rng(42);
    let mut mst = Mst::new();
    let empty = mst.root();
    let mut truth: HashMap<String, Cid> = HashMap::new();
    for step in 0..3000 {
        let k = key(rng.below(400));
        if rng.below(3) == 0 {
            assert_eq!(mst.remove(&k), truth.remove(&k));
        } else {
            let v = Cid::for_raw(&(step as u64).to_be_bytes());
            assert_eq!(mst.insert(k.clone(), v), truth.insert(k, v));
        }
        if step % 250 == 0 {
            let mut fresh = Mst::new();
            for (k, v) in &truth {
                fresh.insert(k.clone(), *v);
            }
            assert_eq!(mst.root(), fresh.root(), "step {step}");
            assert_eq!(mst.len(), truth.len());
            for (k, v) in &truth {
                assert_eq!(mst.get(k), Some(v));
            }
        }
    }
    let keys: Vec<String> = truth.keys().cloned().collect();
    for k in keys {
        mst.remove(&k);
    }
    assert_eq!(mst.root(), empty);
    assert!(mst.is_empty());
}

#[test]
fn insert_then_remove_restores_the_root() {
    let mut mst = Mst::new();
    for i in 0..300 {
        mst.insert(key(i), record(i).0);
    }
    let before = mst.root();
    for i in 300..400 {
        mst.insert(key(i), record(i).0);
    }
    assert_ne!(mst.root(), before);
    for i in 300..400 {
        mst.remove(&key(i));
    }
    assert_eq!(mst.root(), before);
}

#[test]
fn a_repo_reads_back_verified() {
    let mut built = build(1000, 1);
    let car = built.car();
    let pk = signing_key(1).public_key();
    let repo = read_repo(&car, DID, Some(&pk), &RepoLimits::default()).unwrap();
    assert_eq!(repo.commit_cid, built.commit_cid);
    assert_eq!(repo.commit.data, built.mst.root());
    assert_eq!(repo.records.len(), 1000);
    let mut keys: Vec<String> = (0..1000).map(key).collect();
    keys.sort();
    let got: Vec<String> = repo
        .records
        .iter()
        .map(|r| format!("{}/{}", r.collection, r.rkey))
        .collect();
    assert_eq!(got, keys);
    for r in &repo.records {
        assert!(r.cid.verify(&r.block));
    }

    let empty = build(0, 1).car();
    let repo = read_repo(&empty, DID, Some(&pk), &RepoLimits::default()).unwrap();
    assert!(repo.records.is_empty());
}

fn reason(car: &[u8]) -> &'static str {
    let pk = signing_key(1).public_key();
    read_repo(car, DID, Some(&pk), &RepoLimits::default())
        .unwrap_err()
        .reason()
}

#[test]
fn each_broken_repo_is_rejected_with_its_reason() {
    let mut built = build(200, 1);
    let car = built.car();
    let root = built.mst.root();
    let pk = signing_key(1).public_key();

    let other = signing_key(2).public_key();
    assert_eq!(
        read_repo(&car, DID, Some(&other), &RepoLimits::default()),
        Err(RepoError::BadSignature)
    );
    assert!(matches!(
        read_repo(
            &car,
            "did:plc:someoneelse",
            Some(&pk),
            &RepoLimits::default()
        ),
        Err(RepoError::WrongDid { .. })
    ));
    assert_eq!(reason(&car[..car.len() - 7]), "bad_car");
    let tight = RepoLimits {
        max_records: 10,
        ..RepoLimits::default()
    };
    assert_eq!(
        read_repo(&car, DID, Some(&pk), &tight)
            .unwrap_err()
            .reason(),
        "too_large"
    );

    let record_cid = record(5).0;
    let missing_record = rewrite(&car, |b| b.retain(|(c, _)| *c != record_cid));
    assert_eq!(
        read_repo(&missing_record, DID, Some(&pk), &RepoLimits::default()),
        Err(RepoError::MissingRecord {
            key: key(5),
            cid: record_cid
        })
    );
    let bad_record = rewrite(&car, |b| {
        for (c, d) in b.iter_mut() {
            if *c == record_cid {
                d.push(0);
            }
        }
    });
    assert_eq!(reason(&bad_record), "bad_record_hash");

    let node_cids: Vec<Cid> = built.mst.blocks().into_iter().map(|(c, _)| c).collect();
    let inner = *node_cids.last().unwrap();
    let missing_node = rewrite(&car, |b| b.retain(|(c, _)| *c != inner));
    assert_eq!(reason(&missing_node), "mst_missing_block");
    let corrupt_node = rewrite(&car, |b| {
        for (c, d) in b.iter_mut() {
            if *c == root {
                let last = d.len() - 1;
                d[last] ^= 1;
            }
        }
    });
    assert_eq!(reason(&corrupt_node), "mst_bad_hash");
    let no_commit = rewrite(&car, |b| {
        b.remove(0);
    });
    assert_eq!(reason(&no_commit), "missing_commit");
}

/// A CAR whose commit points at hand-made node blocks.
fn car_with_nodes(root: Cid, nodes: Vec<(Cid, Vec<u8>)>, records: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let (commit_cid, commit_block, _) =
        Commit::signed(DID, root, "3kaaaaaaaaaa2", None, &signing_key(1));
    let mut blocks = vec![(commit_cid, commit_block)];
    blocks.extend(nodes);
    blocks.extend(records.iter().cloned());
    write_car(&[commit_cid], &blocks)
}

fn node(left: Option<Cid>, entries: &[(&str, Cid, Option<Cid>)]) -> (Cid, Vec<u8>) {
    let mut previous = "";
    let e = entries
        .iter()
        .map(|(k, v, t)| {
            let p = previous
                .bytes()
                .zip(k.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            previous = k;
            Value::map([
                ("p", Value::Integer(p as i64)),
                ("k", Value::Bytes(k.as_bytes()[p..].to_vec())),
                ("v", Value::Link(*v)),
                ("t", t.map_or(Value::Null, Value::Link)),
            ])
        })
        .collect();
    let bytes = encode(&Value::map([
        ("l", left.map_or(Value::Null, Value::Link)),
        ("e", Value::List(e)),
    ]));
    (Cid::for_dag_cbor(&bytes), bytes)
}

/// Keys of height 0 and one of height 1, found by search.
fn keys_of_height(height: u32, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("app.bsky.feed.post/k{i:06}"))
        .filter(|k| key_height(k) == height)
        .take(count)
        .collect()
}

#[test]
fn malformed_trees_are_rejected_by_reason() {
    let rec = record(0);
    let recs = [rec.clone()];
    let low = keys_of_height(0, 3);
    let high = keys_of_height(1, 1);

    let (a, b) = (low[0].as_str(), low[1].as_str());
    let good = node(None, &[(a, rec.0, None), (b, rec.0, None)]);
    assert!(read_repo(
        &car_with_nodes(good.0, vec![good.clone()], &recs),
        DID,
        None,
        &RepoLimits::default()
    )
    .is_ok());

    let unordered = node(None, &[(b, rec.0, None), (a, rec.0, None)]);
    assert_eq!(
        reason(&car_with_nodes(unordered.0, vec![unordered], &recs)),
        "mst_key_order"
    );

    // A height-1 key on layer 0, below a height-1 root.
    let wrong_layer_child = node(None, &[(high[0].as_str(), rec.0, None)]);
    let parent = node(
        Some(wrong_layer_child.0),
        &[(high[0].as_str(), rec.0, None)],
    );
    assert_eq!(
        reason(&car_with_nodes(
            parent.0,
            vec![parent, wrong_layer_child],
            &recs
        )),
        "mst_wrong_layer"
    );

    let empty_child = node(None, &[]);
    let parent = node(Some(empty_child.0), &[(high[0].as_str(), rec.0, None)]);
    assert_eq!(
        reason(&car_with_nodes(parent.0, vec![parent, empty_child], &recs)),
        "mst_empty_node"
    );

    // Keys out of order across nodes: the subtree left of `hi` holds a later key.
    let hi = high[0].as_str();
    let late = keys_of_height(0, 200)
        .into_iter()
        .find(|k| k.as_str() > hi)
        .unwrap();
    let child = node(None, &[(late.as_str(), rec.0, None)]);
    let parent = node(Some(child.0), &[(hi, rec.0, None)]);
    assert_eq!(
        reason(&car_with_nodes(parent.0, vec![parent, child], &recs)),
        "mst_key_order"
    );

    // A prefix longer than the previous key, and an extra field: not a node.
    let bytes = encode(&Value::map([
        ("l", Value::Null),
        (
            "e",
            Value::List(vec![Value::map([
                ("p", Value::Integer(3)),
                ("k", Value::Bytes(a.as_bytes().to_vec())),
                ("v", Value::Link(rec.0)),
                ("t", Value::Null),
            ])]),
        ),
    ]));
    let cid = Cid::for_dag_cbor(&bytes);
    assert_eq!(
        reason(&car_with_nodes(cid, vec![(cid, bytes)], &recs)),
        "mst_bad_node"
    );
    let bytes = encode(&Value::map([
        ("l", Value::Null),
        ("e", Value::List(vec![])),
        ("x", Value::Integer(1)),
    ]));
    let cid = Cid::for_dag_cbor(&bytes);
    assert_eq!(
        reason(&car_with_nodes(cid, vec![(cid, bytes)], &recs)),
        "mst_non_canonical"
    );

    let bad_key = node(None, &[("no-slash", rec.0, None)]);
    assert_eq!(
        reason(&car_with_nodes(bad_key.0, vec![bad_key], &recs)),
        "mst_bad_key"
    );
}

/// A commit event for `ops` on `mst`, as a PDS following sync 1.1 sends it.
fn commit_event(
    mst: &mut Mst,
    ops: &[RepoOp],
    prev_data: Cid,
    key: &SigningKey,
    record_blocks: &[(Cid, Vec<u8>)],
) -> frame::Commit {
    let data = mst.root();
    let (commit_cid, commit_block, _) = Commit::signed(DID, data, "3kaaaaaaaaab2", None, key);
    let mut blocks = vec![(commit_cid, commit_block)];
    blocks.extend(mst.commit_blocks(ops.iter().map(|op| op.path.as_str())));
    blocks.extend(record_blocks.iter().cloned());
    frame::Commit {
        seq: 1,
        repo: DID.to_owned(),
        rev: "3kaaaaaaaaab2".to_owned(),
        since: Some("3kaaaaaaaaaa2".to_owned()),
        time: "2024-01-01T00:00:00.000Z".to_owned(),
        commit: commit_cid,
        blocks: write_car(&[commit_cid], &blocks),
        ops: ops.to_vec(),
        blobs: vec![],
        too_big: false,
        rebase: false,
        prev_data: Some(prev_data),
    }
}

#[test]
fn firehose_commits_are_checked_by_signature_and_inversion() {
    let sk = signing_key(3);
    let mut mst = Mst::new();
    for i in 0..500 {
        mst.insert(key(i), record(i).0);
    }
    let prev_data = mst.root();
    let (new_cid, new_block) = record(1000);
    let updated = record(1001);
    mst.insert(key(1000), new_cid);
    mst.insert(key(7), updated.0);
    mst.remove(&key(8));
    let ops = vec![
        RepoOp {
            action: OpAction::Create,
            path: key(1000),
            cid: Some(new_cid),
            prev: None,
        },
        RepoOp {
            action: OpAction::Update,
            path: key(7),
            cid: Some(updated.0),
            prev: Some(record(7).0),
        },
        RepoOp {
            action: OpAction::Delete,
            path: key(8),
            cid: None,
            prev: Some(record(8).0),
        },
    ];
    let records = [(new_cid, new_block), updated.clone()];
    let event = commit_event(&mut mst, &ops, prev_data, &sk, &records);
    let check = verify_commit_event(&event, &sk.public_key()).unwrap();
    assert!(check.inverted);
    assert_eq!(check.commit.data, mst.root());

    assert_eq!(
        verify_commit_event(&event, &signing_key(4).public_key()),
        Err(RepoError::BadSignature)
    );
    let mut wrong_prev = event.clone();
    wrong_prev.prev_data = Some(Cid::for_raw(b"elsewhere"));
    assert_eq!(
        verify_commit_event(&wrong_prev, &sk.public_key())
            .unwrap_err()
            .reason(),
        "prev_data_mismatch"
    );
    let mut no_prev = event.clone();
    no_prev.ops[2].prev = None;
    assert_eq!(
        verify_commit_event(&no_prev, &sk.public_key())
            .unwrap_err()
            .reason(),
        "mst_op_mismatch"
    );
    // Without its proof blocks (only the root), the inversion cannot run.
    let root = mst.root();
    let mut stripped = event.clone();
    stripped.blocks = rewrite(&event.blocks, |b| {
        b.retain(|(c, _)| *c == event.commit || *c == root)
    });
    assert_eq!(
        verify_commit_event(&stripped, &sk.public_key())
            .unwrap_err()
            .reason(),
        "mst_missing_block"
    );
    let mut lying_rev = event.clone();
    lying_rev.rev = "3kzzzzzzzzzz2".to_owned();
    assert_eq!(
        verify_commit_event(&lying_rev, &sk.public_key())
            .unwrap_err()
            .reason(),
        "wrong_rev"
    );
}

#[test]
fn commit_blocks_carry_every_new_node() {
    let mut rng = Rng(7);
    let mut mst = Mst::new();
    for i in 0..300 {
        mst.insert(key(i), record(i).0);
    }
    for round in 0..200 {
        let old: HashMap<Cid, Vec<u8>> = mst.blocks().into_iter().collect();
        let prev_data = mst.root();
        let k = key(rng.below(400));
        let op = match mst.get(&k).copied() {
            Some(prev) if round % 2 == 0 => {
                mst.remove(&k);
                RepoOp {
                    action: OpAction::Delete,
                    path: k,
                    cid: None,
                    prev: Some(prev),
                }
            }
            prev => {
                let cid = Cid::for_raw(&(round as u64).to_be_bytes());
                mst.insert(k.clone(), cid);
                RepoOp {
                    action: if prev.is_some() {
                        OpAction::Update
                    } else {
                        OpAction::Create
                    },
                    path: k,
                    cid: Some(cid),
                    prev,
                }
            }
        };
        let proof: HashMap<Cid, Vec<u8>> =
            mst.commit_blocks([op.path.as_str()]).into_iter().collect();
        for (cid, _) in mst.blocks() {
            assert!(old.contains_key(&cid) || proof.contains_key(&cid));
        }
        let root = mst.root();
        assert_eq!(invert_ops(&root, &[op], &proof).unwrap(), prev_data);
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = Rng(0xdeadbeef);
    let mut built = build(50, 1);
    let car = built.car();
    let pk = signing_key(1).public_key();
    let limits = RepoLimits::default();
    for _ in 0..500 {
        let len = rng.below(300);
        let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = read_repo(&noise, DID, Some(&pk), &limits);
        let _ = Commit::decode(&noise);
        let map: HashMap<Cid, Vec<u8>> = [(Cid::for_dag_cbor(&noise), noise.clone())].into();
        let _ = walk(&Cid::for_dag_cbor(&noise), &map);

        let mut mutated = car.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(mutated.len());
            mutated[at] = rng.next() as u8;
        }
        let _ = read_repo(&mutated, DID, Some(&pk), &limits);
    }
    // Node blocks with valid hashes but garbage contents.
    for _ in 0..2000 {
        let (_, block) = built.mst.blocks().swap_remove(0);
        let mut block = block;
        let at = rng.below(block.len());
        block[at] = rng.next() as u8;
        let cid = Cid::for_dag_cbor(&block);
        let map: HashMap<Cid, Vec<u8>> = [(cid, block)].into();
        let _ = walk(&cid, &map);
    }
}
