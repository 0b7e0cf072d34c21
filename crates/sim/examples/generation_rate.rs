//! Prints how fast the synthetic network generates encoded frames.
//! Run with `cargo run --release -p skyhose-sim --example generation_rate [events]`.

use std::time::Instant;

use skyhose_sim::{Network, SimConfig};

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500_000);
    let mut net = Network::new(SimConfig::default());
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..events {
        bytes += net.next_frame().1.len();
    }
    let secs = started.elapsed().as_secs_f64();
    let truth_started = Instant::now();
    let truth = net.truth();
    println!(
        "generated {events} frames in {secs:.2}s: {:.0} events/s, {:.1} MB/s, {:.0} bytes/frame avg; truth ({} records) in {:.2}s",
        events as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / events as f64,
        truth.records.len(),
        truth_started.elapsed().as_secs_f64()
    );
}
