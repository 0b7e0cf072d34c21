//! Parsing stream entries into the events a batch applies: the indexer's own
//! CPU per event before any statement is sent. Entries are what ingest
//! writes for a simulated network.
//! `cargo bench -p skyhose-index --bench parse`

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhose_index::entry::parse_entry;

fn parse(c: &mut Criterion) {
    let entries = common::simulated_entries(20_000);
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(entries.len() as u64));
    group.bench_function("parse_entry", |b| {
        b.iter(|| entries.iter().filter(|e| parse_entry(e).is_ok()).count())
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
