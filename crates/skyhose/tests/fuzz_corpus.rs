//! Corpus replay: every seed of the fuzz targets (`fuzz/seeds/<target>/`)
//! and thousands of deterministic mutations of each go through the same
//! calls the targets make (`fuzz/fuzz_targets/*.rs`), and none may panic.
//! This runs in CI without libFuzzer; the coverage-guided runs are
//! `scripts/fuzz-all.sh` (docs/reliability.md).
//!
//! `cargo test -p skyhose --test fuzz_corpus -- --ignored` rewrites the
//! seeds from the simulator.

use std::path::{Path, PathBuf};

use skyhose_index::entry::{parse_entry, RawEntry};
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_proto::car::{read_car_with, CarOptions};
use skyhose_proto::decode::{decode, Decoded};
use skyhose_proto::frame::Event;
use skyhose_proto::{cbor, datamodel};
use skyhose_sim::{Network, SimConfig};

const MUTANTS_PER_SEED: usize = 300;

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = seeds_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// SplitMix64: deterministic, so a failure names a reproducible mutant.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bit flips, truncations, insertions, deletions, and lengths smashed to
/// their largest encodings.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        if data.is_empty() {
            data.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(data.len());
        match rng.below(7) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data.truncate(at),
            2 => data.insert(at, rng.next() as u8),
            3 => {
                data.remove(at);
            }
            4 => {
                data[at] = [0x5b, 0x7b, 0x9b, 0xbb][rng.below(4)];
                for b in data.iter_mut().skip(at + 1).take(8) {
                    *b = 0xff;
                }
            }
            5 => {
                let n = rng.below(10);
                for b in data.iter_mut().skip(at).take(n) {
                    *b = 0xff;
                }
            }
            // Text-level damage for the string targets.
            _ => {
                let junk: &[u8] =
                    [&b"%FF"[..], b"\0", b"&", b"=", b"%", b"\xc3", b"'"][rng.below(7)];
                data.splice(at..at, junk.iter().copied());
            }
        }
    }
    data
}

fn replay(target: &str, run: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let mut rng = Rng(0xf022 ^ target.len() as u64);
    let seeds = seeds(target);
    for (i, seed) in seeds.iter().enumerate() {
        if std::panic::catch_unwind(|| run(seed)).is_err() {
            panic!("{target}: seed {i} panicked");
        }
        for m in 0..MUTANTS_PER_SEED {
            let mutant = mutate(&mut rng, seed);
            if std::panic::catch_unwind(|| run(&mutant)).is_err() {
                panic!("{target}: mutant {m} of seed {i} panicked: {mutant:?}");
            }
        }
    }
}

// The bodies below are the fuzz targets' bodies.

#[test]
fn frame_corpus_never_panics() {
    replay("frame", |data| {
        if let Ok(Decoded::Event(event)) = decode(data) {
            let _ = event_to_entry(&event, Compat::Full);
            let _ = event_to_entry(&event, Compat::Seed);
        }
    });
}

#[test]
fn car_corpus_never_panics() {
    replay("car", |data| {
        if let Ok(car) = read_car_with(data, &CarOptions::default()) {
            for (_, block) in &car.blocks {
                let _ = cbor::decode_prefix(block);
            }
        }
    });
}

#[test]
fn dag_cbor_json_corpus_never_panics() {
    replay("dag_cbor_json", |data| {
        if let Ok((value, _)) = cbor::decode_prefix(data) {
            let again = cbor::decode_prefix(&cbor::encode(&value)).map(|(v, _)| v);
            assert_eq!(again.ok(), Some(value.clone()));
            let _ = datamodel::to_json(&value);
            let mut out = String::new();
            datamodel::write_json(&value, &mut out);
        }
    });
}

#[test]
fn stream_entry_corpus_never_panics() {
    replay("stream_entry", |data| {
        let _ = parse_entry(&RawEntry::from_nul_separated(data));
    });
}

#[test]
fn xrpc_query_corpus_never_panics() {
    replay("xrpc_query", |data| {
        let _ = skyhose_api::exercise_query(data);
    });
}

/// Writes a small, varied seed set for every target from the simulator.
#[test]
#[ignore]
fn write_seeds() {
    let mut network = Network::new(SimConfig {
        seed: 5,
        accounts: 50,
        ..SimConfig::default()
    });
    let write = |target: &str, name: String, data: &[u8]| {
        let dir = seeds_dir(target);
        std::fs::create_dir_all(&dir).expect("seed dir");
        std::fs::write(dir.join(name), data).expect("seed");
    };
    let mut kinds_seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..3000 {
        let (_, frame) = network.next_frame();
        let Ok(Decoded::Event(event)) = decode(&frame) else {
            continue;
        };
        let kind = match &event {
            Event::Commit(c) => format!(
                "commit-{}",
                c.ops
                    .first()
                    .map(|o| o.path.split('/').next().unwrap_or("").replace('.', "_"))
                    .unwrap_or_default()
            ),
            Event::Sync(_) => "sync".into(),
            Event::Identity(_) => "identity".into(),
            Event::Account(_) => "account".into(),
            Event::Info(_) => "info".into(),
            Event::Error(_) => "error".into(),
        };
        let seen = kinds_seen.entry(kind.clone()).or_default();
        if *seen >= 2 {
            continue;
        }
        *seen += 1;
        let name = format!("{kind}-{seen}");
        write("frame", name.clone(), &frame);
        if let Event::Commit(c) = &event {
            write("car", name.clone(), &c.blocks);
            if let Ok(car) = read_car_with(&c.blocks, &CarOptions::default()) {
                if let Some((_, block)) = car.blocks.last() {
                    write("dag_cbor_json", name.clone(), block);
                }
            }
        }
        if let Ok(Some(entry)) = event_to_entry(&event, Compat::Full) {
            let raw = RawEntry {
                id: "1-0".into(),
                fields: vec![
                    ("type".into(), entry.kind.as_str().into()),
                    ("data".into(), entry.data.clone()),
                    ("seq".into(), entry.seq.to_string()),
                ],
            };
            write("stream_entry", name, &raw.to_nul_separated());
        }
    }
    let queries = [
        "actor=alice.bsky.social&limit=50",
        "actor=did%3Aplc%3Aabcdefghijklmnopqrstuvwx&filter=posts_no_replies&includePins=true",
        "uri=at%3A%2F%2Fdid%3Aplc%3Aabc%2Fapp.bsky.feed.post%2F3kabc&depth=6&parentHeight=80",
        "uris=at%3A%2F%2Fdid%3Aplc%3Aabc%2Fapp.bsky.feed.post%2F3kabc&uris[]=at%3A%2F%2Fx",
        "actors=alice.test&actors=did%3Aweb%3Aexample.com&cid=bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
        "q=hello%20world&sort=top&since=2024-01-01T00%3A00%3A00Z&tag=rust&tag=atproto",
        "limit=100&cursor=MzVrYWJjOjphdDovL2RpZDpwbGM6YWJjL2FwcC5ic2t5LmZlZWQucG9zdC8za2FiYw",
        "",
    ];
    for (i, q) in queries.iter().enumerate() {
        write("xrpc_query", format!("query-{i}"), q.as_bytes());
    }
}
