//! A/B: reading an `XREADGROUP` reply into entries with the index's own
//! RESP reader (`stream::reader`: walked by length prefixes, one copy per
//! field) against the `redis` crate's reply parser (its value tree, then
//! entries, as the worker read replies before). The reply is the one a
//! worker gets for a batch of the default size: entries as ingest writes
//! them for a simulated network. Both read the same complete bytes; the
//! socket is left out, as it is the same for both.
//! `cargo bench -p skyhose-index --bench resp`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhose_index::{entries_of_reply, entries_of_reply_with_redis, DEFAULT_BATCH_SIZE};
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_sim::{Network, SimConfig};

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// The bytes of an `XREADGROUP` reply with `n` entries of one stream.
fn reply(n: usize) -> Vec<u8> {
    let mut network = Network::new(SimConfig {
        seed: 7,
        accounts: 5_000,
        ..SimConfig::default()
    });
    let mut entries = Vec::with_capacity(n);
    while entries.len() < n {
        let event = network.next_event();
        if let Ok(Some(entry)) = event_to_entry(&event, Compat::Full) {
            entries.push(entry);
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"*1\r\n*2\r\n");
    bulk(&mut out, b"firehose:events");
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
    for (i, entry) in entries.iter().enumerate() {
        out.extend_from_slice(b"*2\r\n");
        bulk(&mut out, format!("1733300000000-{i}").as_bytes());
        out.extend_from_slice(b"*6\r\n");
        bulk(&mut out, b"type");
        bulk(&mut out, entry.kind.as_str().as_bytes());
        bulk(&mut out, b"data");
        bulk(&mut out, entry.data.as_bytes());
        bulk(&mut out, b"seq");
        bulk(&mut out, entry.seq.to_string().as_bytes());
    }
    out
}

fn read(c: &mut Criterion) {
    let reply = reply(DEFAULT_BATCH_SIZE);
    let expected = entries_of_reply(&reply).expect("a valid reply");
    assert_eq!(expected.len(), DEFAULT_BATCH_SIZE);
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
