//! 100,000 mutated real frames through the whole decode path (frame, CAR, record
//! blocks, data-model JSON): every one is either converted or rejected with an
//! error, and none panics or allocates from a smashed length field.

use skyhose_ingest::{event_to_entry, Compat};
use skyhose_proto::decode::{decode, Decoded};
use skyhose_sim::{Network, SimConfig};

const ORIGINALS: usize = 2_000;
const MUTANTS: usize = 100_000;

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

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut frame = original.to_vec();
    for _ in 0..=rng.below(3) {
        if frame.is_empty() {
            frame.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(frame.len());
        match rng.below(6) {
            0 => frame[at] ^= 1 << rng.below(8),
            1 => frame.truncate(at),
            2 => frame.insert(at, rng.next() as u8),
            3 => {
                frame.remove(at);
            }
            // A CBOR head announcing an 8-byte length (bytes, text, array, map),
            // followed by a huge length: the decoder must not allocate it.
            4 => {
                let major = [0x5b, 0x7b, 0x9b, 0xbb][rng.below(4)];
                frame[at] = major;
                for i in 1..=8 {
                    if let Some(b) = frame.get_mut(at + i) {
                        *b = 0xff;
                    }
                }
            }
            // A CAR varint length smashed to its largest form.
            _ => {
                for i in 0..rng.below(10) {
                    if let Some(b) = frame.get_mut(at + i) {
                        *b = 0xff;
                    }
                }
            }
        }
    }
    frame
}

#[test]
fn mutated_frames_never_panic() {
    let mut network = Network::new(SimConfig {
        seed: 11,
        accounts: 300,
        ..SimConfig::default()
    });
    let originals: Vec<Vec<u8>> = (0..ORIGINALS).map(|_| network.next_frame().1).collect();
    let mut rng = Rng(0x5eed);
    let (mut converted, mut rejected) = (0usize, 0usize);
    for i in 0..MUTANTS {
        let mutant = mutate(&mut rng, &originals[i % ORIGINALS]);
        let outcome = std::panic::catch_unwind(|| match decode(&mutant) {
            Ok(Decoded::Event(event)) => event_to_entry(&event, Compat::Full).is_ok(),
            Ok(Decoded::Unknown(_)) => true,
            Err(_) => false,
        });
        match outcome {
            Ok(true) => converted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("mutant {i} (of original {}) panicked", i % ORIGINALS),
        }
    }
    assert_eq!(converted + rejected, MUTANTS);
    // Both paths must actually be exercised for the test to mean anything.
    assert!(converted > MUTANTS / 20, "only {converted} mutants decoded");
    assert!(rejected > MUTANTS / 20, "only {rejected} mutants rejected");
}
