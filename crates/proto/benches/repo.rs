//! Verified reads of a 10,000-record repo CAR (records/s), and MST edits
//! as the simulator makes them (one key, then the commit's blocks).
//! `cargo bench -p skyhose-proto --bench repo`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhose_proto::cbor::{encode, Value};
use skyhose_proto::crypto::{Curve, SigningKey};
use skyhose_proto::mst::Mst;
use skyhose_proto::repo::{read_repo, write_repo_car, Commit, RepoLimits};
use skyhose_proto::Cid;

const DID: &str = "did:plc:abcdefghijklmnopqrstuvwx";
const RECORDS: usize = 10_000;

fn key(i: usize) -> String {
    let collection = [
        "app.bsky.feed.post",
        "app.bsky.feed.like",
        "app.bsky.graph.follow",
    ][i % 3];
    format!("{collection}/3k{i:011}")
}

fn repo_car(key_bytes: [u8; 32]) -> Vec<u8> {
    let mut mst = Mst::new();
    let mut records = Vec::new();
    for i in 0..RECORDS {
        let block = encode(&Value::map([
            ("$type", Value::from("app.bsky.feed.post")),
            (
                "text",
                Value::from(format!("a post of some length, number {i}")),
            ),
            ("createdAt", Value::from("2024-01-01T00:00:00.000Z")),
        ]));
        let cid = Cid::for_dag_cbor(&block);
        mst.insert(key(i), cid);
        records.push((cid, block));
    }
    let sk = SigningKey::from_bytes(Curve::K256, &key_bytes).unwrap();
    let (cid, block, _) = Commit::signed(DID, mst.root(), "3kaaaaaaaaaa2", None, &sk);
    write_repo_car(
        cid,
        &block,
        &mut mst,
        records.iter().map(|(c, b)| (*c, b.as_slice())),
    )
}

fn bench(c: &mut Criterion) {
    let key_bytes = [9u8; 32];
    let car = repo_car(key_bytes);
    let pk = SigningKey::from_bytes(Curve::K256, &key_bytes)
        .unwrap()
        .public_key();
    let limits = RepoLimits::default();
    let mut group = c.benchmark_group("repo");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("read_repo 10k records", |b| {
        b.iter(|| {
            read_repo(&car, DID, Some(&pk), &limits)
                .unwrap()
                .records
                .len()
        })
    });

    let mut mst = Mst::new();
    for i in 0..RECORDS {
        mst.insert(key(i), Cid::for_raw(&(i as u64).to_be_bytes()));
    }
    mst.root();
    group.throughput(Throughput::Elements(1));
    let mut n = RECORDS;
    group.bench_function("insert + root + commit_blocks in a 10k repo", |b| {
        b.iter(|| {
            n += 1;
            let k = key(n);
            mst.insert(k.clone(), Cid::for_raw(&(n as u64).to_be_bytes()));
            mst.root();
            mst.commit_blocks([k.as_str()]).len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
