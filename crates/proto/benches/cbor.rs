//! A/B: the hand-written DAG-CBOR codec (`cbor`) against `serde_ipld_dagcbor`
//! (into and from `ipld_core`'s `Ipld`), decoding and encoding the blocks of
//! a repo CAR: records of the kinds the network carries most (posts with
//! replies, facets and image embeds, likes, reposts, follows), the MST nodes
//! over them and the signed commit. Both encoders must give the same bytes
//! (canonical DAG-CBOR), checked before timing.
//! `cargo bench -p skyhose-proto --bench cbor`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipld_core::ipld::Ipld;
use skyhose_proto::car::read_car;
use skyhose_proto::cbor::{decode_prefix, encode, Value};
use skyhose_proto::crypto::{Curve, SigningKey};
use skyhose_proto::mst::Mst;
use skyhose_proto::repo::{write_repo_car, Commit};
use skyhose_proto::Cid;

const DID: &str = "did:plc:abcdefghijklmnopqrstuvwx";
const RECORDS: usize = 5_000;

fn strong_ref(i: usize, cid: Cid) -> Value {
    Value::map([
        (
            "uri",
            Value::from(format!("at://{DID}/app.bsky.feed.post/3k{i:011}")),
        ),
        ("cid", Value::from(cid.to_string())),
    ])
}

fn record(i: usize, previous: Cid) -> (&'static str, Value) {
    let created = ("createdAt", Value::from("2024-11-01T12:34:56.789Z"));
    match i % 10 {
        0..=2 => {
            let mut post = vec![
                ("$type", Value::from("app.bsky.feed.post")),
                (
                    "text",
                    Value::from(format!(
                        "post number {i}, long enough to look like one: see https://example.com/{i}"
                    )),
                ),
                ("langs", Value::from(vec![Value::from("en")])),
                (
                    "facets",
                    Value::from(vec![Value::map([
                        (
                            "index",
                            Value::map([
                                ("byteStart", Value::from(40_i64)),
                                ("byteEnd", Value::from(70_i64)),
                            ]),
                        ),
                        (
                            "features",
                            Value::from(vec![Value::map([
                                ("$type", Value::from("app.bsky.richtext.facet#link")),
                                ("uri", Value::from(format!("https://example.com/{i}"))),
                            ])]),
                        ),
                    ])]),
                ),
                created.clone(),
            ];
            if i % 3 == 1 {
                post.push((
                    "reply",
                    Value::map([
                        ("root", strong_ref(i / 2, previous)),
                        ("parent", strong_ref(i - 1, previous)),
                    ]),
                ));
            }
            if i % 3 == 2 {
                post.push((
                    "embed",
                    Value::map([
                        ("$type", Value::from("app.bsky.embed.images")),
                        (
                            "images",
                            Value::from(vec![Value::map([
                                ("alt", Value::from("a picture")),
                                (
                                    "image",
                                    Value::map([
                                        ("$type", Value::from("blob")),
                                        ("ref", Value::Link(previous)),
                                        ("mimeType", Value::from("image/jpeg")),
                                        ("size", Value::from(123_456_i64)),
                                    ]),
                                ),
                            ])]),
                        ),
                    ]),
                ));
            }
            ("app.bsky.feed.post", Value::map(post))
        }
        3..=7 => (
            "app.bsky.feed.like",
            Value::map([
                ("$type", Value::from("app.bsky.feed.like")),
                ("subject", strong_ref(i, previous)),
                created,
            ]),
        ),
        8 => (
            "app.bsky.feed.repost",
            Value::map([
                ("$type", Value::from("app.bsky.feed.repost")),
                ("subject", strong_ref(i, previous)),
                created,
            ]),
        ),
        _ => (
            "app.bsky.graph.follow",
            Value::map([
                ("$type", Value::from("app.bsky.graph.follow")),
                ("subject", Value::from(format!("did:plc:{i:024}"))),
                created,
            ]),
        ),
    }
}

/// Every block of a repo CAR of `RECORDS` records.
fn blocks() -> Vec<Vec<u8>> {
    let mut mst = Mst::new();
    let mut records = Vec::new();
    let mut previous = Cid::for_dag_cbor(b"genesis");
    for i in 0..RECORDS {
        let (collection, value) = record(i, previous);
        let block = encode(&value);
        let cid = Cid::for_dag_cbor(&block);
        mst.insert(format!("{collection}/3k{i:011}"), cid);
        records.push((cid, block));
        previous = cid;
    }
    let key = SigningKey::from_bytes(Curve::K256, &[9u8; 32]).expect("a valid key");
    let (cid, block, _) = Commit::signed(DID, mst.root(), "3kaaaaaaaaaa2", None, &key);
    let car = write_repo_car(
        cid,
        &block,
        &mut mst,
        records.iter().map(|(c, b)| (*c, b.as_slice())),
    );
    let (_, blocks) = read_car(&car).expect("a valid CAR");
    blocks.into_iter().map(|(_, data)| data).collect()
}

fn ours(block: &[u8]) -> Option<Value> {
    match decode_prefix(block) {
        Ok((value, used)) if used == block.len() => Some(value),
        _ => None,
    }
}

fn codec(c: &mut Criterion) {
    let blocks = blocks();
    let bytes: usize = blocks.iter().map(Vec::len).sum();
    let values: Vec<Value> = blocks.iter().map(|b| ours(b).expect("decodes")).collect();
    let iplds: Vec<Ipld> = blocks
        .iter()
        .map(|b| serde_ipld_dagcbor::from_slice(b).expect("decodes"))
        .collect();
    for ((block, value), ipld) in blocks.iter().zip(&values).zip(&iplds) {
        assert_eq!(&encode(value), block, "our encoding is canonical");
        let theirs = serde_ipld_dagcbor::to_vec(ipld).expect("encodes");
        assert_eq!(&theirs, block, "serde_ipld_dagcbor's encoding is the same");
    }
    println!("{} blocks, {bytes} bytes", blocks.len());

    let mut group = c.benchmark_group("dag-cbor");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("decode: skyhose_proto::cbor (production)", |b| {
        b.iter(|| blocks.iter().filter_map(|block| ours(block)).count())
    });
    group.bench_function("decode: serde_ipld_dagcbor into Ipld", |b| {
        b.iter(|| {
            blocks
                .iter()
                .filter_map(|block| serde_ipld_dagcbor::from_slice::<Ipld>(block).ok())
                .count()
        })
    });
    group.bench_function("encode: skyhose_proto::cbor (production)", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|value| encode(value).len())
                .sum::<usize>()
        })
    });
    group.bench_function("encode: serde_ipld_dagcbor from Ipld", |b| {
        b.iter(|| {
            iplds
                .iter()
                .filter_map(|ipld| serde_ipld_dagcbor::to_vec(ipld).ok())
                .map(|bytes| bytes.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
