//! A/B: reading an `XREADGROUP` reply into entries with the index's own
//! RESP reader (`stream::reader`: walked by length prefixes, one copy per
//! field) against the `redis` crate's reply parser (its value tree, then
//! entries, as the worker read replies before). The reply is the one a
//! worker gets for a batch of the default size: entries as ingest writes
//! them for a simulated network. Both read the same complete bytes; the
//! socket is left out, as it is the same for both.
//! `cargo bench -p skyhose-index --bench resp`

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhose_index::entry::RawEntry;
use skyhose_index::{entries_of_reply, entries_of_reply_with_redis, DEFAULT_BATCH_SIZE};

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// The bytes of an `XREADGROUP` reply that delivers `entries` of one stream.
fn reply(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"*1\r\n*2\r\n");
    bulk(&mut out, b"firehose:events");
    out.extend_from_slice(format!("*{}\r\n", entries.len()).as_bytes());
    for entry in entries {
        out.extend_from_slice(b"*2\r\n");
        bulk(&mut out, entry.id.as_bytes());
        out.extend_from_slice(format!("*{}\r\n", entry.fields.len() * 2).as_bytes());
        for (name, value) in &entry.fields {
            bulk(&mut out, name.as_bytes());
            bulk(&mut out, value.as_bytes());
        }
    }
    out
}

fn read(c: &mut Criterion) {
    let expected = common::simulated_entries(DEFAULT_BATCH_SIZE);
    let reply = reply(&expected);
    assert_eq!(entries_of_reply(&reply), Ok(expected.clone()));
    assert_eq!(
        entries_of_reply_with_redis(&reply).expect("a valid reply"),
        expected,
        "both readers give the same entries"
    );
    let mut group = c.benchmark_group("xreadgroup reply");
    group.throughput(Throughput::Bytes(reply.len() as u64));
    group.bench_function("hand-written reader (production)", |b| {
        b.iter(|| entries_of_reply(&reply).map(|entries| entries.len()))
    });
    group.bench_function("redis crate parser", |b| {
        b.iter(|| entries_of_reply_with_redis(&reply).map(|entries| entries.len()))
    });
    group.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
