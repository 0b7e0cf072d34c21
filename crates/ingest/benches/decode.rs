//! Full decode of realistic simulated frames: frame header and body, the CAR
//! blocks, every record block to data-model JSON in its stream entry.
//! `cargo bench -p skyhose-ingest --bench decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_proto::car::read_car;
use skyhose_proto::datamodel::to_json;
use skyhose_proto::decode::{decode, Decoded};
use skyhose_proto::frame::Event;
use skyhose_proto::records::Record;
use skyhose_sim::{Network, SimConfig};

fn frames(n: usize) -> Vec<Vec<u8>> {
    let mut network = Network::new(SimConfig {
        seed: 5,
        accounts: 5_000,
        ..SimConfig::default()
    });
    (0..n).map(|_| network.next_frame().1).collect()
}

fn full_decode(c: &mut Criterion) {
    let frames = frames(10_000);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("frame+car+records+json", |b| {
        b.iter(|| {
            let mut json_bytes = 0usize;
            for frame in &frames {
                if let Ok(Decoded::Event(event)) = decode(frame) {
                    if let Ok(Some(entry)) = event_to_entry(&event, Compat::Full) {
                        json_bytes += entry.data.len();
                    }
                }
            }
            json_bytes
        })
    });
    group.bench_function("frame+car+verified records+typed records", |b| {
        b.iter(|| {
            let mut typed = 0usize;
            for frame in &frames {
                let Ok(Decoded::Event(Event::Commit(commit))) = decode(frame) else {
                    continue;
                };
                let Ok((_, blocks)) = read_car(&commit.blocks) else {
                    continue;
                };
                for (op, record) in commit.ops_with_records(&blocks) {
                    let Ok(Some(value)) = record else { continue };
                    let collection = op.path.split('/').next().unwrap_or_default();
                    if Record::from_json(collection, &to_json(&value)).is_ok() {
                        typed += 1;
                    }
                }
            }
            typed
        })
    });
    group.bench_function("frame+car only", |b| {
        b.iter(|| frames.iter().filter(|f| decode(f).is_ok()).count())
    });
    group.finish();
}

criterion_group!(benches, full_decode);
criterion_main!(benches);
