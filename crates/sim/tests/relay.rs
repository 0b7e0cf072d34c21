//! The simulated relay over real WebSocket connections: cursor semantics,
//! independent consumers, fault modes and capture files.

mod common;

use std::time::Duration;

use common::{connect, parts, read, read_frames, seq_of, Read};
use skyhose_sim::relay::{self, Faults, RelayConfig};
use skyhose_sim::wire::Event;
use skyhose_sim::{generate, rfc3339, Network, SimConfig};

fn sim() -> SimConfig {
    SimConfig {
        seed: 11,
        accounts: 100,
        ..SimConfig::default()
    }
}

fn cfg(total: u64, window: usize) -> RelayConfig {
    RelayConfig {
        sim: sim(),
        total: Some(total),
        window,
        ..RelayConfig::default()
    }
}

#[tokio::test]
async fn replay_from_cursor_matches_generated_frames() {
    let relay = relay::start(cfg(1500, 10_000)).await.unwrap();
    relay.wait_for_head(1500).await;
    let (expected, _) = generate(&sim(), 1500);
    let mut ws = connect(&relay.url(), Some(0)).await;
    assert_eq!(read_frames(&mut ws, 1500).await, expected);
    let mut ws = connect(&relay.url(), Some(1000)).await;
    let got = read_frames(&mut ws, 500).await;
    assert_eq!(got.first().and_then(|f| seq_of(f)), Some(1001));
    assert_eq!(got.as_slice(), &expected[1000..]);
    relay.shutdown().await;
}

/// Consumers measure their lag against the relay's newest event; the
/// simulated network's clock is its own, not the wall clock.
#[tokio::test]
async fn head_clock_is_the_time_of_the_newest_event() {
    let relay = relay::start(cfg(300, 1000)).await.unwrap();
    relay.wait_for_head(300).await;
    let mut network = Network::new(sim());
    let newest = (0..300).map(|_| network.next_event()).last().unwrap();
    let time = match &newest {
        Event::Commit(c) => c.time.clone(),
        Event::Identity(i) => i.time.clone(),
        Event::Account(a) => a.time.clone(),
        Event::Sync(s) => s.time.clone(),
        other => panic!("event 300 has no time: {other:?}"),
    };
    let clock = relay.head_clock();
    assert_eq!(rfc3339((clock() * 1e6).round() as i64), time);
    relay.shutdown().await;
}

#[tokio::test]
async fn without_cursor_serves_the_live_tail() {
    let relay = relay::start(RelayConfig {
        rate: Some(500.0),
        ..cfg(100_000, 10_000)
    })
    .await
    .unwrap();
    relay.wait_for_head(50).await;
    let mut ws = connect(&relay.url(), None).await;
    let head_at_connect = relay.head_seq();
    let frames = read_frames(&mut ws, 20).await;
    assert_eq!(frames.len(), 20);
    let seqs: Vec<i64> = frames.iter().filter_map(|f| seq_of(f)).collect();
    assert!(
        seqs[0] > head_at_connect - 5,
        "live tail starts near head: {seqs:?} vs {head_at_connect}"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous: {seqs:?}"
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn old_cursor_gets_outdated_info_then_oldest_retained() {
    let relay = relay::start(cfg(2000, 500)).await.unwrap();
    relay.wait_for_head(2000).await;
    let mut ws = connect(&relay.url(), Some(10)).await;
    let frames = read_frames(&mut ws, 3).await;
    let (t, body) = parts(&frames[0]);
    assert_eq!(t, "#info");
    assert_eq!(
        body.get("name").and_then(|v| v.as_str()),
        Some("OutdatedCursor")
    );
    assert_eq!(seq_of(&frames[1]), Some(1501));
    relay.shutdown().await;
}

#[tokio::test]
async fn future_cursor_gets_error_and_close() {
    let relay = relay::start(cfg(100, 500)).await.unwrap();
    relay.wait_for_head(100).await;
    let mut ws = connect(&relay.url(), Some(5000)).await;
    let Read::Frame(frame) = read(&mut ws, Duration::from_secs(5)).await else {
        panic!("expected an error frame")
    };
    let (t, body) = parts(&frame);
    assert_eq!(t, "error");
    assert_eq!(
        body.get("error").and_then(|v| v.as_str()),
        Some("FutureCursor")
    );
    assert_eq!(read(&mut ws, Duration::from_secs(5)).await, Read::Closed);
    relay.shutdown().await;
}

#[tokio::test]
async fn consumers_are_independent() {
    let relay = relay::start(cfg(800, 10_000)).await.unwrap();
    relay.wait_for_head(800).await;
    let mut a = connect(&relay.url(), Some(0)).await;
    let mut b = connect(&relay.url(), Some(400)).await;
    let fb = read_frames(&mut b, 400).await;
    let fa = read_frames(&mut a, 800).await;
    assert_eq!(fa.len(), 800);
    assert_eq!(fb.as_slice(), &fa[400..]);
    relay.shutdown().await;
}

#[tokio::test]
async fn drop_every_closes_after_n_frames() {
    let faults = Faults {
        drop_every: Some(100),
        ..Faults::default()
    };
    let relay = relay::start(RelayConfig {
        faults,
        ..cfg(500, 10_000)
    })
    .await
    .unwrap();
    relay.wait_for_head(500).await;
    let mut ws = connect(&relay.url(), Some(0)).await;
    assert_eq!(read_frames(&mut ws, 500).await.len(), 100);
    let mut ws = connect(&relay.url(), Some(100)).await;
    let next = read_frames(&mut ws, 500).await;
    assert_eq!(next.first().and_then(|f| seq_of(f)), Some(101));
    assert_eq!(next.len(), 100);
    relay.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_are_extra_never_replacing_events() {
    let faults = Faults {
        malformed_rate: 0.2,
        ..Faults::default()
    };
    let relay = relay::start(RelayConfig {
        faults,
        ..cfg(1000, 10_000)
    })
    .await
    .unwrap();
    relay.wait_for_head(1000).await;
    let (expected, _) = generate(&sim(), 1000);
    let mut ws = connect(&relay.url(), Some(0)).await;
    let mut good = Vec::new();
    let mut bad = 0;
    while good.len() < 1000 {
        let Read::Frame(f) = read(&mut ws, Duration::from_secs(5)).await else {
            panic!("stream ended early")
        };
        match skyhose_sim::wire::decode_frame_parts(&f) {
            Ok((h, _)) if h.get("t").is_some() => good.push(f),
            _ => bad += 1,
        }
    }
    assert_eq!(good, expected);
    assert!(
        bad > 100 && bad < 300,
        "about 20% extra malformed frames, got {bad}"
    );
    relay.shutdown().await;
}

/// A consumer replaying from its cursor reads at its own pace: far behind
/// head is not "too slow" while it replays.
#[tokio::test]
async fn replaying_consumer_is_never_cut_for_its_lag() {
    let faults = Faults {
        too_slow_lag: Some(100),
        ..Faults::default()
    };
    let relay = relay::start(RelayConfig {
        faults,
        ..cfg(1000, 10_000)
    })
    .await
    .unwrap();
    relay.wait_for_head(1000).await;
    let mut ws = connect(&relay.url(), Some(0)).await;
    let frames = read_frames(&mut ws, 1000).await;
    let seqs: Vec<i64> = frames.iter().filter_map(|f| seq_of(f)).collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    relay.shutdown().await;
}

/// A live consumer that stops reading while the relay keeps producing is
/// dropped with ConsumerTooSlow once it is more than the limit behind.
#[tokio::test]
async fn lagging_live_consumer_gets_consumer_too_slow() {
    let faults = Faults {
        too_slow_lag: Some(100),
        ..Faults::default()
    };
    let relay = relay::start(RelayConfig {
        faults,
        rate: Some(5_000.0),
        ..cfg(60_000, 100_000)
    })
    .await
    .unwrap();
    let mut ws = connect(&relay.url(), None).await;
    assert!(matches!(
        read(&mut ws, Duration::from_secs(5)).await,
        Read::Frame(_)
    ));
    // Not reading: the socket's buffers fill and the relay falls behind.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut error = None;
    for _ in 0..60_000 {
        match read(&mut ws, Duration::from_secs(5)).await {
            Read::Frame(frame) => {
                let (t, body) = parts(&frame);
                if t == "error" {
                    error = body
                        .get("error")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    break;
                }
            }
            Read::Closed | Read::Silent => break,
        }
    }
    assert_eq!(error.as_deref(), Some("ConsumerTooSlow"));
    assert_eq!(read(&mut ws, Duration::from_secs(5)).await, Read::Closed);
    relay.shutdown().await;
}

#[tokio::test]
async fn stall_keeps_the_socket_open_then_resumes() {
    let faults = Faults {
        stall_after: Some(50),
        stall_secs: 1.5,
        ..Faults::default()
    };
    let relay = relay::start(RelayConfig {
        faults,
        ..cfg(200, 10_000)
    })
    .await
    .unwrap();
    relay.wait_for_head(200).await;
    let mut ws = connect(&relay.url(), Some(0)).await;
    assert_eq!(read_frames(&mut ws, 50).await.len(), 50);
    assert_eq!(
        read(&mut ws, Duration::from_millis(700)).await,
        Read::Silent
    );
    let rest = read_frames(&mut ws, 150).await;
    assert_eq!(rest.first().and_then(|f| seq_of(f)), Some(51));
    assert_eq!(rest.len(), 150);
    relay.shutdown().await;
}

#[tokio::test]
async fn record_then_replay_serves_the_same_frames() {
    let dir = std::env::temp_dir().join(format!("skyhose-sim-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cap.bin");
    let relay = relay::start(RelayConfig {
        record_file: Some(path.clone()),
        ..cfg(700, 10_000)
    })
    .await
    .unwrap();
    relay.wait_for_head(700).await;
    let mut ws = connect(&relay.url(), Some(0)).await;
    let original = read_frames(&mut ws, 700).await;
    relay.shutdown().await;

    assert_eq!(skyhose_sim::capture::read_capture(&path).unwrap(), original);
    let replay = RelayConfig {
        replay_file: Some(path.clone()),
        sim: SimConfig { seed: 999, ..sim() },
        ..cfg(10_000, 10_000)
    };
    let relay = relay::start(replay).await.unwrap();
    relay.wait_for_head(700).await;
    let mut ws = connect(&relay.url(), Some(0)).await;
    assert_eq!(read_frames(&mut ws, 700).await, original);
    assert_eq!(relay.head_seq(), 700);
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn capture_rejects_bad_magic_and_truncation() {
    use skyhose_sim::capture::{CaptureError, CaptureReader, CaptureWriter};
    assert!(matches!(
        CaptureReader::new(&b"NOTACAPT"[..]),
        Err(CaptureError::BadMagic)
    ));
    let mut w = CaptureWriter::new(Vec::new()).unwrap();
    w.write_frame(b"hello").unwrap();
    w.write_frame(b"world!").unwrap();
    let bytes = w.into_inner();
    let frames: Vec<_> = CaptureReader::new(&bytes[..])
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(frames, vec![b"hello".to_vec(), b"world!".to_vec()]);
    let cut = &bytes[..bytes.len() - 2];
    let result: Result<Vec<_>, _> = CaptureReader::new(cut).unwrap().collect();
    assert!(matches!(result, Err(CaptureError::Truncated { index: 1 })));
}
