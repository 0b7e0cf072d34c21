//! The simulated relay: a WebSocket server for `com.atproto.sync.subscribeRepos`
//! with the spec's cursor semantics, a bounded replay window and injectable faults.
//!
//! One generator thread produces frames (from the network or a capture file)
//! into the shared window; each connection task reads the window independently.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::capture::{CaptureReader, CaptureWriter};
use crate::hosts::SharedNetwork;
use crate::network::{Network, SimConfig};
use crate::rng::SplitMix64;
use crate::wire::{self, ErrorFrame, Event, Info, Value};

pub const SUBSCRIBE_PATH: &str = "/xrpc/com.atproto.sync.subscribeRepos";
/// Frames sent per lock of the window; bounds how long a consumer holds the lock.
const BATCH: usize = 512;

/// Misbehaviours the relay can inject, per connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Close each connection (without a close frame) after this many event frames.
    pub drop_every: Option<u64>,
    /// Probability, per event frame, of sending an extra malformed frame before it.
    pub malformed_rate: f64,
    /// A live consumer (one that has caught up with head since it connected)
    /// more than this many events behind head gets `ConsumerTooSlow` and is
    /// closed, as a relay drops a subscriber whose send buffer is full. A
    /// consumer still replaying from its cursor is never cut for its lag,
    /// since a relay serves a replay at the consumer's pace.
    pub too_slow_lag: Option<u64>,
    /// After this many event frames a connection goes silent for `stall_secs` (socket open).
    pub stall_after: Option<u64>,
    pub stall_secs: f64,
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    pub sim: SimConfig,
    /// Stop generating after this many events (the relay keeps serving).
    pub total: Option<u64>,
    /// Events per second; `None` generates as fast as possible.
    pub rate: Option<f64>,
    /// Events generated at once on start before `rate` applies, so a relay restarted
    /// beside a consumer's saved cursor has that cursor in its window again.
    pub burst: u64,
    /// Frames retained for cursor replay.
    pub window: usize,
    pub faults: Faults,
    /// Serve the frames of this capture instead of generating.
    pub replay_file: Option<PathBuf>,
    /// Record every served frame to this capture.
    pub record_file: Option<PathBuf>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sim: SimConfig::default(),
            total: None,
            rate: None,
            burst: 0,
            window: 100_000,
            faults: Faults::default(),
            replay_file: None,
            record_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    pub head_seq: i64,
    pub generated: u64,
    pub consumers: usize,
    pub connections: u64,
    /// True once generation has stopped (total reached, capture exhausted or failed).
    pub finished: bool,
}

struct Shared {
    window: Mutex<VecDeque<(i64, Bytes)>>,
    head: AtomicI64,
    generated: AtomicU64,
    consumers: AtomicUsize,
    connections: AtomicU64,
    finished: AtomicBool,
    stop: AtomicBool,
    head_tx: watch::Sender<i64>,
    shutdown_tx: watch::Sender<bool>,
}

pub struct RelayHandle {
    addr: SocketAddr,
    sim: SimConfig,
    network: Option<SharedNetwork>,
    shared: Arc<Shared>,
    generator: Option<std::thread::JoinHandle<()>>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl RelayHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://HOST:PORT`, the base URL consumers connect to.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The full subscribeRepos URL.
    pub fn subscribe_url(&self) -> String {
        format!("ws://{}{SUBSCRIBE_PATH}", self.addr)
    }

    pub fn head_seq(&self) -> i64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// The network being generated, for the repo hosts to serve (`None`
    /// when replaying a capture).
    pub fn network(&self) -> Option<SharedNetwork> {
        self.network.clone()
    }

    /// The relay's clock for consumers that measure how far behind it they
    /// are: the simulated time of its newest event, in seconds since the
    /// Unix epoch. A live relay's newest event is the wall clock; the
    /// simulated network keeps time of its own. (A relay replaying a
    /// capture serves the capture's times, which this does not know.)
    pub fn head_clock(&self) -> impl Fn() -> f64 + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        let sim = self.sim.clone();
        move || sim.time_of_seq_micros(shared.head.load(Ordering::Acquire)) as f64 / 1e6
    }

    pub fn stats(&self) -> RelayStats {
        RelayStats {
            head_seq: self.head_seq(),
            generated: self.shared.generated.load(Ordering::Relaxed),
            consumers: self.shared.consumers.load(Ordering::Relaxed),
            connections: self.shared.connections.load(Ordering::Relaxed),
            finished: self.shared.finished.load(Ordering::Acquire),
        }
    }

    /// Waits until generation stopped or head reached `seq`.
    pub async fn wait_for_head(&self, seq: i64) {
        let mut rx = self.shared.head_tx.subscribe();
        let _ = rx
            .wait_for(|h| *h >= seq || self.shared.finished.load(Ordering::Acquire))
            .await;
    }

    pub async fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.shared.shutdown_tx.send(true);
        if let Some(generator) = self.generator.take() {
            let _ = tokio::task::spawn_blocking(move || generator.join()).await;
        }
        self.acceptor.abort();
        let _ = (&mut self.acceptor).await;
    }
}

pub async fn start(cfg: RelayConfig) -> std::io::Result<RelayHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let source = match &cfg.replay_file {
        Some(path) => Source::Replay(CaptureReader::open(path).map_err(std::io::Error::other)?),
        None => Source::Network(Arc::new(Mutex::new(Network::new(cfg.sim.clone())))),
    };
    let network = match &source {
        Source::Network(net) => Some(net.clone()),
        Source::Replay(_) => None,
    };
    let recorder = match &cfg.record_file {
        Some(path) => Some(CaptureWriter::create(path).map_err(std::io::Error::other)?),
        None => None,
    };
    let (head_tx, _) = watch::channel(0);
    let (shutdown_tx, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        window: Mutex::new(VecDeque::new()),
        head: AtomicI64::new(0),
        generated: AtomicU64::new(0),
        consumers: AtomicUsize::new(0),
        connections: AtomicU64::new(0),
        finished: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        head_tx,
        shutdown_tx,
    });
    let generator = {
        let shared = shared.clone();
        let pace = Pace {
            total: cfg.total,
            rate: cfg.rate,
            burst: cfg.burst,
        };
        let window = cfg.window.max(1);
        std::thread::Builder::new()
            .name("sim-generator".into())
            .spawn(move || generate(shared, source, recorder, pace, window))?
    };
    let acceptor = tokio::spawn(accept_loop(
        listener,
        shared.clone(),
        cfg.faults.clone(),
        cfg.sim.seed,
    ));
    Ok(RelayHandle {
        addr,
        sim: cfg.sim.clone(),
        network,
        shared,
        generator: Some(generator),
        acceptor,
    })
}

enum Source {
    Network(SharedNetwork),
    Replay(CaptureReader<std::io::BufReader<std::fs::File>>),
}

impl Source {
    fn next(&mut self, fallback_seq: i64) -> Option<(i64, Vec<u8>)> {
        match self {
            Source::Network(net) => {
                Some(net.lock().unwrap_or_else(|e| e.into_inner()).next_frame())
            }
            Source::Replay(reader) => match reader.next_frame() {
                Ok(Some(frame)) => Some((frame_seq(&frame).unwrap_or(fallback_seq), frame)),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "replay capture unreadable; generation stops");
                    None
                }
            },
        }
    }
}

/// The `seq` field of a frame's body, if it has one.
pub fn frame_seq(frame: &[u8]) -> Option<i64> {
    let (_, body) = wire::decode_frame_parts(frame).ok()?;
    body.get("seq").and_then(Value::as_i64)
}

/// How fast and how far the generator runs.
struct Pace {
    total: Option<u64>,
    rate: Option<f64>,
    burst: u64,
}

fn generate(
    shared: Arc<Shared>,
    mut source: Source,
    mut recorder: Option<CaptureWriter<std::io::BufWriter<std::fs::File>>>,
    pace: Pace,
    window: usize,
) {
    let Pace { total, rate, burst } = pace;
    let started = Instant::now();
    let mut produced: u64 = 0;
    let mut batch = Vec::with_capacity(BATCH);
    'outer: while !shared.stop.load(Ordering::Acquire) {
        // How many events may exist by now under the rate limit.
        let allowed = match rate {
            Some(r) if r > 0.0 => burst + (started.elapsed().as_secs_f64() * r) as u64 + 1,
            _ => u64::MAX,
        };
        let mut budget = allowed.saturating_sub(produced).min(BATCH as u64);
        if let Some(t) = total {
            budget = budget.min(t.saturating_sub(produced));
            if produced >= t {
                break;
            }
        }
        if budget == 0 {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for _ in 0..budget {
            let fallback = shared.head.load(Ordering::Relaxed) + batch.len() as i64 + 1;
            let Some((seq, frame)) = source.next(fallback) else {
                publish(&shared, &mut batch, window);
                break 'outer;
            };
            if let Some(rec) = recorder.as_mut() {
                if let Err(e) = rec.write_frame(&frame) {
                    tracing::error!(error = %e, "recording stopped");
                    recorder = None;
                }
            }
            batch.push((seq, Bytes::from(frame)));
            produced += 1;
        }
        publish(&shared, &mut batch, window);
    }
    if let Some(mut rec) = recorder {
        if let Err(e) = rec.flush() {
            tracing::error!(error = %e, "capture flush failed");
        }
    }
    shared.finished.store(true, Ordering::Release);
    shared.head_tx.send_modify(|_| {});
}

fn publish(shared: &Shared, batch: &mut Vec<(i64, Bytes)>, window: usize) {
    let Some(&(last, _)) = batch.last() else {
        return;
    };
    let n = batch.len() as u64;
    if let Ok(mut w) = shared.window.lock() {
        w.extend(batch.drain(..));
        while w.len() > window {
            w.pop_front();
        }
    }
    batch.clear();
    shared.head.store(last, Ordering::Release);
    shared.generated.fetch_add(n, Ordering::Relaxed);
    shared.head_tx.send_replace(last);
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, faults: Faults, seed: u64) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_id = shared.connections.fetch_add(1, Ordering::Relaxed);
        let (shared, faults) = (shared.clone(), faults.clone());
        tokio::spawn(async move {
            shared.consumers.fetch_add(1, Ordering::Relaxed);
            let result = serve(
                stream,
                &shared,
                &faults,
                seed ^ conn_id.wrapping_mul(0x9E37_79B9),
            )
            .await;
            shared.consumers.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "consumer connection ended");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Reads `cursor` from the request; `Err` holds the HTTP rejection.
/// Accepts a subscription's WebSocket on `path` (404 for another path, 400
/// for a cursor that is not an integer); the cursor asked for, if any.
// The handshake callback's error type is fixed by tungstenite (an HTTP response).
#[allow(clippy::result_large_err)]
pub(crate) async fn accept_subscription(
    stream: TcpStream,
    path: &str,
) -> Result<
    (tokio_tungstenite::WebSocketStream<TcpStream>, Option<i64>),
    tokio_tungstenite::tungstenite::Error,
> {
    let mut cursor = None;
    let ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        match parse_request(req, path) {
            Ok(c) => {
                cursor = c;
                Ok(resp)
            }
            Err((status, msg)) => {
                let mut err = ErrorResponse::new(Some(msg));
                *err.status_mut() = status;
                Err(err)
            }
        }
    })
    .await?;
    Ok((ws, cursor))
}

fn parse_request(req: &Request, path: &str) -> Result<Option<i64>, (StatusCode, String)> {
    if req.uri().path() != path {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", req.uri().path()),
        ));
    }
    let mut cursor = None;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        if let Some(value) = pair.strip_prefix("cursor=") {
            let parsed = value.parse::<i64>().map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cursor is not an integer: {value:?}"),
                )
            })?;
            cursor = Some(parsed);
        }
    }
    Ok(cursor)
}

fn error_frame(error: &str, message: &str) -> Bytes {
    Bytes::from(wire::encode_frame(&Event::Error(ErrorFrame {
        error: error.into(),
        message: Some(message.into()),
    })))
}

fn malformed_frame(rng: &mut SplitMix64, real: &[u8]) -> Bytes {
    match rng.below(3) {
        0 => Bytes::from(
            (0..1 + rng.below(64))
                .map(|_| rng.next_u64() as u8)
                .collect::<Vec<_>>(),
        ),
        1 => Bytes::copy_from_slice(real.get(..real.len() / 2).unwrap_or_default()),
        _ => {
            // A header that is not a CBOR map, followed by the real body bytes.
            let mut bad = vec![0xff, 0x1c];
            bad.extend_from_slice(real.get(8..).unwrap_or_default());
            Bytes::from(bad)
        }
    }
}

async fn serve(
    stream: TcpStream,
    shared: &Shared,
    faults: &Faults,
    seed: u64,
) -> Result<(), ServeError> {
    let (ws, cursor) = accept_subscription(stream, SUBSCRIBE_PATH).await?;
    let (mut sink, mut incoming) = ws.split();
    let mut head_rx = shared.head_tx.subscribe();
    let mut shutdown_rx = shared.shutdown_tx.subscribe();
    let mut rng = SplitMix64::new(seed);

    let head = shared.head.load(Ordering::Acquire);
    let oldest = shared
        .window
        .lock()
        .ok()
        .and_then(|w| w.front().map(|f| f.0));
    let mut next_seq = match cursor {
        None => head + 1,
        Some(c) if c > head => {
            sink.send(Message::Binary(error_frame(
                "FutureCursor",
                &format!("cursor {c} is ahead of head {head}"),
            )))
            .await?;
            sink.close().await?;
            return Ok(());
        }
        Some(c) => match oldest {
            Some(old) if c + 1 < old => {
                let info = Event::Info(Info {
                    name: "OutdatedCursor".into(),
                    message: Some(format!(
                        "cursor {c} is older than the oldest retained event {old}"
                    )),
                });
                sink.send(Message::Binary(Bytes::from(wire::encode_frame(&info))))
                    .await?;
                old
            }
            _ => c + 1,
        },
    };
    let mut sent: u64 = 0;
    let mut stalled = false;
    let mut live = next_seq > head;
    let mut batch: Vec<(i64, Bytes)> = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        let mut fell_out = false;
        if let Ok(w) = shared.window.lock() {
            if let Some(&(old, _)) = w.front() {
                if next_seq < old && sent > 0 {
                    fell_out = true;
                }
            }
            let start = w.partition_point(|(s, _)| *s < next_seq);
            batch.extend(w.range(start..).take(BATCH).cloned());
        }
        let head = shared.head.load(Ordering::Acquire);
        let lag = (head - next_seq + 1).max(0) as u64;
        live = live || lag == 0;
        if fell_out || (live && faults.too_slow_lag.is_some_and(|max| lag > max)) {
            let msg = format!("consumer is {lag} events behind head {head}");
            sink.send(Message::Binary(error_frame("ConsumerTooSlow", &msg)))
                .await?;
            sink.close().await?;
            return Ok(());
        }
        if batch.is_empty() {
            tokio::select! {
                changed = head_rx.changed() => if changed.is_err() { return Ok(()) },
                _ = shutdown_rx.changed() => { let _ = sink.close().await; return Ok(()) },
                msg = incoming.next() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => {}
                },
            }
            continue;
        }
        for (seq, frame) in batch.drain(..) {
            if faults.malformed_rate > 0.0 && rng.chance(faults.malformed_rate) {
                sink.feed(Message::Binary(malformed_frame(&mut rng, &frame)))
                    .await?;
            }
            sink.feed(Message::Binary(frame)).await?;
            sent += 1;
            next_seq = seq + 1;
            if faults.drop_every.is_some_and(|n| sent >= n) {
                // An abrupt drop: no close frame, like a network failure.
                sink.flush().await?;
                return Ok(());
            }
            if !stalled && faults.stall_after.is_some_and(|n| sent >= n) {
                stalled = true;
                sink.flush().await?;
                tokio::time::sleep(Duration::from_secs_f64(faults.stall_secs.max(0.0))).await;
            }
        }
        sink.flush().await?;
        if *shutdown_rx.borrow() {
            let _ = sink.close().await;
            return Ok(());
        }
    }
}
