//! Decoding realistic simulated frames the way ingest does: frame header and
//! body, each op's record block found in the CAR, its CID checked and the
//! record written as data-model JSON into the stream entry; beside it, the
//! frame with its whole CAR read and every block's CID checked (what a
//! consumer that keeps every block would pay; ingest reads only the ops'
//! blocks).
//! `cargo bench -p skyhose-ingest --bench decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhose_ingest::{event_to_entry_with, Compat, ConvertOptions};
use skyhose_proto::car::{read_car_with, CarOptions};
use skyhose_proto::decode::{decode, Decoded};
use skyhose_proto::frame::Event;
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
    // What ingest does per frame, with its default settings (record CIDs
    // verified).
    let production = ConvertOptions {
        compat: Compat::Full,
        verify_cids: true,
    };
    group.bench_function("ingest: frame+records+verified CIDs+entry json", |b| {
        b.iter(|| {
            let mut json_bytes = 0usize;
            for frame in &frames {
                if let Ok(Decoded::Event(event)) = decode(frame) {
                    if let Ok(Some(entry)) = event_to_entry_with(&event, production) {
                        json_bytes += entry.data.len();
                    }
                }
            }
            json_bytes
        })
    });
    group.bench_function("frame+car (every block framed, CIDs checked)", |b| {
        b.iter(|| {
            let mut blocks = 0usize;
            for frame in &frames {
                let Ok(Decoded::Event(Event::Commit(commit))) = decode(frame) else {
                    continue;
                };
                if let Ok(car) = read_car_with(&commit.blocks, &CarOptions::default()) {
                    blocks += car.blocks.len();
                }
            }
            blocks
        })
    });
    group.finish();
}

criterion_group!(benches, full_decode);
criterion_main!(benches);
