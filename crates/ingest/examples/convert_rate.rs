//! Frame decoding and entry conversion rates over simulated frames, without
//! network or Redis: `cargo run --release -p skyhose-ingest --example convert_rate [events]`.

use std::time::Instant;

use skyhose_ingest::{event_to_entry, Compat};
use skyhose_proto::decode::{decode, Decoded};
use skyhose_sim::{Network, SimConfig};

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let mut net = Network::new(SimConfig {
        seed: 3,
        accounts: 5000,
        ..SimConfig::default()
    });
    let frames: Vec<Vec<u8>> = (0..events).map(|_| net.next_frame().1).collect();
    let bytes: usize = frames.iter().map(Vec::len).sum();

    let started = Instant::now();
    let decoded: Vec<_> = frames
        .iter()
        .filter_map(|f| match decode(f) {
            Ok(Decoded::Event(e)) => Some(e),
            _ => None,
        })
        .collect();
    let decode_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut json_bytes = 0;
    for event in &decoded {
        if let Ok(Some(entry)) = event_to_entry(event, Compat::Full) {
            json_bytes += entry.data.len();
        }
    }
    let convert_secs = started.elapsed().as_secs_f64();
    println!(
        "{} frames, {:.1} MB: decode {:.0}/s, convert {:.0}/s ({:.1} MB of JSON), both {:.0}/s",
        decoded.len(),
        bytes as f64 / 1e6,
        decoded.len() as f64 / decode_secs,
        decoded.len() as f64 / convert_secs,
        json_bytes as f64 / 1e6,
        decoded.len() as f64 / (decode_secs + convert_secs)
    );
}
