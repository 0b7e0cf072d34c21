//! Parsing stream entries into the events a batch applies: the indexer's own
//! CPU per event before any statement is sent. Entries are what ingest
//! writes for a simulated network.
//! `cargo bench -p skyhose-index --bench parse`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhose_index::entry::{parse_entry, RawEntry};
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_sim::{Network, SimConfig};

fn entries(n: usize) -> Vec<RawEntry> {
    let mut network = Network::new(SimConfig {
        seed: 7,
        accounts: 5_000,
        ..SimConfig::default()
    });
    let mut entries = Vec::with_capacity(n);
    while entries.len() < n {
        let event = network.next_event();
        let Ok(Some(entry)) = event_to_entry(&event, Compat::Full) else {
            continue;
        };
        entries.push(RawEntry {
            id: format!("1-{}", entries.len()),
            fields: vec![
                ("type".into(), entry.kind.as_str().into()),
                ("data".into(), entry.data),
                ("seq".into(), entry.seq.to_string()),
            ],
        });
    }
    entries
}

fn parse(c: &mut Criterion) {
    let entries = entries(20_000);
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(entries.len() as u64));
    group.bench_function("parse_entry", |b| {
        b.iter(|| entries.iter().filter(|e| parse_entry(e).is_ok()).count())
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
