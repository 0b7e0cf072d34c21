//! Prints how fast the relay serves frames to one consumer: generation first
//! (`--total` events), then a full replay from cursor 0 over loopback.
//! Run with `cargo run --release -p skyhose-sim --example serve_rate [events] [capture]`;
//! with a capture path, the first run records it and later runs replay it.

use std::time::Instant;

use futures_util::StreamExt;
use skyhose_sim::relay::{self, RelayConfig};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000);
    let capture = std::env::args().nth(2).map(std::path::PathBuf::from);
    let (record_file, replay_file) = match capture {
        Some(path) if path.exists() => (None, Some(path)),
        other => (other, None),
    };
    let mode = if replay_file.is_some() {
        "replayed"
    } else {
        "generated"
    };
    let started = Instant::now();
    let relay = relay::start(RelayConfig {
        total: Some(events),
        window: events as usize,
        record_file,
        replay_file,
        ..RelayConfig::default()
    })
    .await?;
    relay.wait_for_head(events as i64).await;
    let generated_in = started.elapsed().as_secs_f64();
    let url = format!("{}?cursor=0", relay.subscribe_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(std::io::Error::other)?;
    let started = Instant::now();
    let (mut frames, mut bytes) = (0u64, 0usize);
    while frames < events {
        match ws.next().await {
            Some(Ok(msg)) => {
                bytes += msg.len();
                frames += 1;
            }
            _ => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{mode} {events} events in {generated_in:.2}s ({:.0}/s); served {frames} frames in {secs:.2}s: {:.0} frames/s, {:.1} MB/s",
        events as f64 / generated_in,
        frames as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    relay.shutdown().await;
    Ok(())
}
