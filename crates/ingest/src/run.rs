//! The ingest loop: relay frames in, batches of `XADD`s with their cursor out.
//!
//! Only one batch is ever in flight and the cursor moves in the same atomic
//! script as the entries it covers, so after a crash the stream and the
//! cursor agree and resuming from the cursor neither skips nor repeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{subscribe_url, IngestConfig, RelayClock};
use crate::entry::{
    event_to_entry_with, resync_entry, Compat, ConvertOptions, EntryKind, StreamEntry,
};
use crate::observe::{self, now_unix, rfc3339_now, rfc3339_unix};
use crate::sink::Sink;
use crate::verify::{Verdict, Verifier};
use skyhose_proto::decode::{best_effort_seq_repo, decode, Decoded};
use skyhose_proto::frame::Event;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Relay events (with a seq) written to the stream.
    pub events_written: u64,
    /// Stream entries written, `info` entries included.
    pub entries_written: u64,
    pub decode_errors: u64,
    pub op_errors: u64,
    pub duplicates_skipped: u64,
    pub reconnects: u64,
    pub redis_errors: u64,
    pub backpressure_pauses: u64,
    /// Commits whose signature (and `prevData`) checked out.
    pub commits_verified: u64,
    /// Commits not written because a check failed (each became a resync
    /// request in full compatibility).
    pub commits_rejected: u64,
    /// The cursor key's value at the end.
    pub cursor: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("relay URL {0:?} must start with ws:// or wss://")]
    BadRelayUrl(String),
    #[error("Redis at {url}: {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
    #[error("metrics endpoint on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the Redis writer task failed: {0}")]
    Writer(String),
    /// Redis no longer holds what this process wrote (restarted without
    /// persistence, flushed, or its keys deleted). The stream cannot be
    /// continued from memory: the caller resumes from the index's watermark.
    #[error(
        "Redis lost the stream and cursor this process wrote (cursor was {written:?}): {detail}"
    )]
    RedisLostData {
        written: Option<i64>,
        detail: String,
    },
    #[error("stopping while Redis is failing ({source}); {pending} entries not written, cursor left at {cursor:?}")]
    UnflushedAtShutdown {
        pending: usize,
        cursor: Option<i64>,
        source: redis::RedisError,
    },
}

/// Where to start reading the relay, from Redis, the override and the fallback.
fn resume_cursor(cfg: &IngestConfig, redis: crate::sink::RedisResume) -> Option<i64> {
    if let Some(cursor) = cfg.cursor_override {
        return Some(cursor);
    }
    // The stream's last entry can only be ahead of the cursor if something
    // other than this program wrote it; never write a seq twice either way.
    match (redis.cursor, redis.last_entry_seq) {
        (Some(c), Some(s)) => Some(c.max(s)),
        (Some(c), None) => Some(c),
        (None, Some(s)) => Some(s),
        // No cursor and no entries: Redis lost its data (or never had any; an
        // empty stream left by an earlier start counts as none).
        (None, None) => cfg.fallback_cursor,
    }
}

/// A transaction that Redis took.
struct WriteDone {
    sink: Sink,
    cursor: Option<i64>,
    events: u64,
    entries: u64,
    redis_errors: u64,
    elapsed: Duration,
}

/// Writes one batch and its cursor, retrying on a fresh connection until
/// Redis takes it; gives up only when stopping.
async fn write_with_retries(
    mut sink: Sink,
    entries: Vec<StreamEntry>,
    cursor: Option<i64>,
    written_before: Option<i64>,
    shutdown: CancellationToken,
    backoff_base: Duration,
) -> Result<WriteDone, IngestError> {
    let mut backoff = Backoff::new(backoff_base, Duration::from_secs(5));
    let mut failures = 0u64;
    let started = Instant::now();
    loop {
        let Err(e) = sink.write_batch(&entries, cursor, written_before).await else {
            break;
        };
        if e.code() == Some(crate::sink::LOST_DATA) {
            return Err(IngestError::RedisLostData {
                written: written_before,
                detail: e.to_string(),
            });
        }
        failures += 1;
        metrics::counter!(observe::REDIS_ERRORS).increment(1);
        tracing::warn!(error = %e, entries = entries.len(), cursor, "batch write failed; retrying");
        if shutdown.is_cancelled() && failures >= 5 {
            return Err(IngestError::UnflushedAtShutdown {
                pending: entries.len(),
                cursor: written_before,
                source: e,
            });
        }
        tokio::time::sleep(backoff.next_delay().max(Duration::from_millis(50))).await;
        if sink.reconnect().await.is_err() {
            continue;
        }
        // The reply may have been lost after EXEC ran: the cursor tells.
        if let (Ok(Some(stored)), Some(cursor)) = (sink.cursor().await, cursor) {
            if stored >= cursor && !matches!(written_before, Some(w) if stored <= w) {
                break;
            }
        }
    }
    Ok(WriteDone {
        sink,
        cursor,
        events: entries.iter().filter(|e| e.kind != EntryKind::Info).count() as u64,
        entries: entries.len() as u64,
        redis_errors: failures,
        elapsed: started.elapsed(),
    })
}

/// Why a connection ended.
enum Disconnect {
    Closed,
    Stalled,
    TooSlow,
    FutureCursor,
    RelayError,
    Shutdown,
    Done,
}

struct Ingest {
    cfg: IngestConfig,
    sink: Sink,
    shutdown: CancellationToken,
    batch: Vec<StreamEntry>,
    batch_opened: Option<Instant>,
    /// Highest seq accepted (in the batch or already written).
    accepted: Option<i64>,
    /// Highest seq durably written (the cursor key).
    written: Option<i64>,
    summary: IngestSummary,
    tallies: Tallies,
    last_event_time: Option<String>,
    stream_len_estimate: u64,
    connected: bool,
    in_flight: Option<tokio::task::JoinHandle<Result<WriteDone, IngestError>>>,
    in_flight_events: u64,
    /// Events (not `info` entries) in `batch`.
    batch_events: u64,
    /// When the relay last sent anything; a pause for backpressure restarts
    /// it, since silence we caused ourselves is not a stall.
    last_frame: Instant,
    /// The commit checks, when on.
    verifier: Option<Arc<Verifier>>,
}

/// A frame decoded and, for a commit when checks are on, what they found.
struct Checked {
    decoded: Result<Decoded, FrameFailure>,
    verdict: Option<Verdict>,
}

/// A frame that did not decode: what could still be read of it.
struct FrameFailure {
    seq: Option<i64>,
    repo: Option<String>,
    problem: String,
}

impl Checked {
    fn decode(frame: &[u8]) -> Checked {
        let decoded = decode(frame).map_err(|e| {
            let (seq, repo) = best_effort_seq_repo(frame);
            FrameFailure {
                seq,
                repo,
                problem: e.to_string(),
            }
        });
        Checked {
            decoded,
            verdict: None,
        }
    }
}

/// Decodes `frame` and, if it is a commit, checks it in a task of its own,
/// so that checks (key lookups, signatures) overlap with each other and
/// with reading; the caller takes the results back in relay order.
fn check_frame(verifier: &Arc<Verifier>, frame: &[u8]) -> BoxFuture<'static, Checked> {
    let checked = Checked::decode(frame);
    let Ok(Decoded::Event(Event::Commit(_))) = &checked.decoded else {
        return futures_util::future::ready(checked).boxed();
    };
    let verifier = Arc::clone(verifier);
    let task = tokio::spawn(async move {
        let verdict = match &checked.decoded {
            Ok(Decoded::Event(Event::Commit(commit))) => Some(verifier.check(commit).await),
            _ => None,
        };
        Checked { verdict, ..checked }
    });
    async move {
        task.await.unwrap_or_else(|e| Checked {
            decoded: Err(FrameFailure {
                seq: None,
                repo: None,
                problem: format!("commit check failed: {e}"),
            }),
            verdict: None,
        })
    }
    .boxed()
}

/// Counts kept locally and handed to the metrics recorder once per batch:
/// a labelled counter per event would cost more than converting it.
#[derive(Default)]
struct Tallies {
    by_kind: [u64; 5],
    bytes: u64,
    verified: u64,
}

fn kind_index(kind: EntryKind) -> usize {
    match kind {
        EntryKind::Commit => 0,
        EntryKind::Identity => 1,
        EntryKind::Account => 2,
        EntryKind::Sync => 3,
        EntryKind::Info => 4,
    }
}

const KINDS: [EntryKind; 5] = [
    EntryKind::Commit,
    EntryKind::Identity,
    EntryKind::Account,
    EntryKind::Sync,
    EntryKind::Info,
];

/// Runs until `shutdown` is cancelled (or `stop_after` events were written),
/// then flushes the current batch and returns what was done.
pub async fn run(
    cfg: IngestConfig,
    shutdown: CancellationToken,
) -> Result<IngestSummary, IngestError> {
    if !(cfg.relay_url.starts_with("ws://") || cfg.relay_url.starts_with("wss://")) {
        return Err(IngestError::BadRelayUrl(cfg.relay_url));
    }
    // wss:// needs a process-wide TLS crypto provider; an error only means
    // one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(addr) = cfg.metrics_listen {
        observe::serve_metrics(addr)
            .await
            .map_err(|source| IngestError::Metrics { addr, source })?;
    }
    let redis_err = |source| IngestError::Redis {
        url: cfg.redis_url.clone(),
        source,
    };
    let mut sink = Sink::connect(&cfg).await.map_err(redis_err)?;
    let state = sink.resume_state().await.map_err(redis_err)?;
    sink.ensure_group().await.map_err(redis_err)?;
    let start = resume_cursor(&cfg, state);
    tracing::info!(
        redis_cursor = ?state.cursor,
        last_entry_seq = ?state.last_entry_seq,
        stream_exists = state.stream_exists,
        override_cursor = ?cfg.cursor_override,
        fallback_cursor = ?cfg.fallback_cursor,
        resume_from = ?start,
        "ingest starting"
    );
    // Exported at zero from the start: a process that has not received an
    // event yet (the relay's backlog was taken by its predecessor) still
    // has the series, and rates over a restart start from zero.
    observe::describe_metrics(KINDS.iter().map(|kind| kind.as_str()));
    let cfg_verifier = cfg
        .verify
        .clone()
        .map(|verify| Arc::new(Verifier::new(verify)));
    let ingest = Ingest {
        batch: Vec::with_capacity(cfg.batch_max),
        cfg,
        sink,
        shutdown,
        batch_opened: None,
        accepted: start,
        written: state.cursor,
        summary: IngestSummary::default(),
        tallies: Tallies::default(),
        last_event_time: None,
        stream_len_estimate: 0,
        connected: false,
        in_flight: None,
        in_flight_events: 0,
        batch_events: 0,
        last_frame: Instant::now(),
        verifier: cfg_verifier,
    };
    ingest.main_loop().await
}

impl Ingest {
    async fn main_loop(mut self) -> Result<IngestSummary, IngestError> {
        let mut backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_cap);
        let mut live_tail_next = false;
        self.refresh_stream_state().await;
        loop {
            let cursor = if live_tail_next { None } else { self.accepted };
            let url = subscribe_url(&self.cfg.relay_url, cursor);
            let connected_at = Instant::now();
            let outcome = self.connection(&url).await?;
            self.connected = false;
            if matches!(outcome, Disconnect::Shutdown | Disconnect::Done) {
                break;
            }
            if connected_at.elapsed() >= self.cfg.healthy_reset {
                backoff.reset();
            }
            let reason = match outcome {
                Disconnect::Closed => "closed",
                Disconnect::Stalled => "stalled",
                Disconnect::TooSlow => "consumer_too_slow",
                Disconnect::FutureCursor => "future_cursor",
                Disconnect::RelayError => "relay_error",
                Disconnect::Shutdown | Disconnect::Done => "shutdown",
            };
            // A relay that says our cursor is in its future has lost or reset
            // its sequence; asking again with the same cursor would loop, so
            // after the backoff we tail live and accept the relay's numbering.
            live_tail_next = matches!(outcome, Disconnect::FutureCursor);
            if live_tail_next {
                self.flush_and_settle().await?;
                self.accepted = None;
            }
            self.summary.reconnects += 1;
            metrics::counter!(observe::RECONNECTS, "reason" => reason).increment(1);
            let delay = backoff.next_delay();
            tracing::info!(reason, delay_ms = delay.as_millis() as u64, cursor = ?self.accepted, "reconnecting to the relay");
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.flush_and_settle().await?;
        self.publish_status(0.0).await;
        self.summary.cursor = self.written;
        tracing::info!(summary = ?self.summary, "ingest stopped");
        Ok(self.summary)
    }

    /// One WebSocket connection, until it ends for any reason.
    async fn connection(&mut self, url: &str) -> Result<Disconnect, IngestError> {
        let mut ws_config = WebSocketConfig::default();
        ws_config.max_message_size = Some(self.cfg.max_frame_bytes);
        ws_config.max_frame_size = Some(self.cfg.max_frame_bytes);
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true);
        let mut ws = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(Disconnect::Shutdown),
            result = tokio::time::timeout(self.cfg.stall_timeout, connect) => match result {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => {
                    tracing::warn!(url, error = %e, "relay connection failed");
                    return Ok(Disconnect::Closed);
                }
                Err(_) => {
                    tracing::warn!(url, "relay connection timed out");
                    return Ok(Disconnect::Stalled);
                }
            },
        };
        tracing::info!(url, "connected to the relay");
        self.connected = true;
        self.last_frame = Instant::now();
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        let mut last_ping = Instant::now();
        let mut last_report = Instant::now();
        let mut events_at_report = self.summary.events_written;
        let mut checking: FuturesOrdered<BoxFuture<'static, Checked>> = FuturesOrdered::new();
        let max_checking = self.verifier.as_ref().map_or(1, |v| v.max_in_flight());
        loop {
            let linger = self
                .batch_opened
                .map(|opened| opened + self.cfg.batch_linger)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(Disconnect::Shutdown),
                _ = tokio::time::sleep_until(linger.into()), if self.batch_opened.is_some() => {
                    self.flush().await?;
                }
                _ = housekeeping.tick() => {
                    // Not reading while the checks catch up is our own pause.
                    if checking.len() >= max_checking {
                        self.last_frame = Instant::now();
                    }
                    if self.last_frame.elapsed() >= self.cfg.stall_timeout {
                        tracing::warn!(silent_secs = self.last_frame.elapsed().as_secs(), "relay stalled");
                        return Ok(Disconnect::Stalled);
                    }
                    // A batch written while no next one follows still moves
                    // the cursor and its gauge now, not with the next batch.
                    if self.in_flight.as_ref().is_some_and(|task| task.is_finished()) {
                        self.settle().await?;
                    }
                    if last_ping.elapsed() >= self.cfg.ping_interval {
                        last_ping = Instant::now();
                        if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                            tracing::warn!(error = %e, "sending a ping to the relay failed");
                            return Ok(Disconnect::Closed);
                        }
                    }
                    if last_report.elapsed() >= self.cfg.status_interval {
                        let secs = last_report.elapsed().as_secs_f64();
                        let rate = (self.summary.events_written - events_at_report) as f64 / secs;
                        self.report(rate).await;
                        last_report = Instant::now();
                        events_at_report = self.summary.events_written;
                    }
                }
                Some(checked) = checking.next(), if !checking.is_empty() => {
                    if let Some(end) = self.handle_checked(checked).await? {
                        return Ok(end);
                    }
                }
                message = ws.next(), if checking.len() < max_checking => {
                    // Any frame, a pong included, shows the relay is alive.
                    self.last_frame = Instant::now();
                    let bytes = match message {
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        Some(Ok(Message::Close(_))) | None => {
                            return self.drain(&mut checking, Disconnect::Closed).await;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "relay connection error");
                            return self.drain(&mut checking, Disconnect::Closed).await;
                        }
                    };
                    self.tallies.bytes += bytes.len() as u64;
                    let end = match &self.verifier {
                        Some(verifier) => {
                            checking.push_back(check_frame(verifier, &bytes));
                            None
                        }
                        None => self.handle_checked(Checked::decode(&bytes)).await?,
                    };
                    if let Some(end) = end {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Takes in the frames read before the relay closed, whose checks are
    /// still running, so they are not asked for again.
    async fn drain(
        &mut self,
        checking: &mut FuturesOrdered<BoxFuture<'static, Checked>>,
        end: Disconnect,
    ) -> Result<Disconnect, IngestError> {
        while let Some(checked) = checking.next().await {
            if let Some(end) = self.handle_checked(checked).await? {
                return Ok(end);
            }
        }
        Ok(end)
    }

    /// Queues one decoded frame, in relay order; `Some` ends the connection.
    async fn handle_checked(
        &mut self,
        checked: Checked,
    ) -> Result<Option<Disconnect>, IngestError> {
        let Checked { decoded, verdict } = checked;
        let event = match decoded {
            Ok(Decoded::Event(event)) => event,
            Ok(Decoded::Unknown(t)) => {
                tracing::debug!(
                    message_type = t,
                    "skipping a message type this version does not know"
                );
                return Ok(None);
            }
            Err(failure) => {
                self.decode_error(failure.seq, failure.repo.as_deref(), &failure.problem);
                return Ok(None);
            }
        };
        match &event {
            Event::Error(err) => {
                let message = err.message.as_deref().unwrap_or("");
                return Ok(Some(match err.error.as_str() {
                    "FutureCursor" => {
                        tracing::error!(cursor = ?self.accepted, message, "relay says the cursor is in its future");
                        Disconnect::FutureCursor
                    }
                    "ConsumerTooSlow" => {
                        tracing::warn!(cursor = ?self.accepted, message, "relay dropped us as too slow");
                        Disconnect::TooSlow
                    }
                    other => {
                        tracing::warn!(error = other, message, "relay sent an error frame");
                        Disconnect::RelayError
                    }
                }));
            }
            Event::Info(info) if info.name == "OutdatedCursor" => {
                tracing::warn!(cursor = ?self.accepted, message = ?info.message, "cursor older than the relay's window; events were missed");
            }
            Event::Info(info) => {
                tracing::info!(name = info.name, message = ?info.message, "relay info")
            }
            _ => {}
        }
        if let Some(seq) = event.seq() {
            if self.accepted.is_some_and(|accepted| seq <= accepted) {
                self.summary.duplicates_skipped += 1;
                metrics::counter!(observe::DUPLICATES).increment(1);
                return Ok(None);
            }
        }
        let options = ConvertOptions {
            compat: self.cfg.compat,
            verify_cids: self.cfg.verify_cids,
        };
        let converted = match (&event, verdict) {
            (Event::Commit(c), Some(Verdict::Rejected { reason, detail })) => {
                self.summary.commits_rejected += 1;
                metrics::counter!(observe::COMMITS_REJECTED, "reason" => reason).increment(1);
                tracing::warn!(
                    did = c.repo,
                    seq = c.seq,
                    rev = c.rev,
                    reason,
                    detail,
                    "commit rejected; the repo is to be fetched again"
                );
                match self.cfg.compat {
                    Compat::Full => resync_entry(&c.repo, &c.rev, &c.time, c.seq, reason).map(Some),
                    Compat::Seed => Ok(None),
                }
            }
            (_, verdict) => {
                if verdict == Some(Verdict::Verified) {
                    self.summary.commits_verified += 1;
                    self.tallies.verified += 1;
                }
                event_to_entry_with(&event, options)
            }
        };
        let mut entry = match converted {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.decode_error(event.seq(), None, &e.to_string());
                return Ok(None);
            }
        };
        if let Event::Commit(c) = &event {
            if entry.op_errors > 0 {
                tracing::warn!(
                    seq = c.seq,
                    repo = c.repo,
                    ops = entry.op_errors,
                    "ops without a readable record"
                );
            }
            self.last_event_time = Some(c.time.clone());
        }
        match event.seq() {
            Some(seq) => self.accepted = Some(seq),
            None => entry.seq = self.accepted.unwrap_or(0),
        }
        if entry.op_errors > 0 {
            self.summary.op_errors += u64::from(entry.op_errors);
            metrics::counter!(observe::OP_ERRORS).increment(u64::from(entry.op_errors));
        }
        self.tallies.by_kind[kind_index(entry.kind)] += 1;
        if entry.kind != EntryKind::Info {
            self.batch_events += 1;
        }
        self.batch.push(entry);
        if self.batch_opened.is_none() {
            self.batch_opened = Some(Instant::now());
        }
        if self.batch.len() >= self.cfg.batch_max {
            self.flush().await?;
        }
        if let Some(limit) = self.cfg.stop_after {
            let pending = self.in_flight_events + self.batch_events;
            if self.summary.events_written + pending >= limit {
                self.flush_and_settle().await?;
                return Ok(Some(Disconnect::Done));
            }
        }
        Ok(None)
    }

    fn decode_error(&mut self, seq: Option<i64>, repo: Option<&str>, problem: &str) {
        self.summary.decode_errors += 1;
        metrics::counter!(observe::DECODE_ERRORS).increment(1);
        tracing::warn!(
            ?seq,
            ?repo,
            problem,
            "skipping a frame that does not decode"
        );
    }

    /// Hands the batch to the writer and returns at once, so the next batch is
    /// decoded while Redis runs this one. At most one transaction is in
    /// flight and each carries its own cursor, so they commit in order.
    async fn flush(&mut self) -> Result<(), IngestError> {
        self.batch_opened = None;
        if self.batch.is_empty() {
            return Ok(());
        }
        self.settle().await?;
        let entries = std::mem::replace(&mut self.batch, Vec::with_capacity(self.cfg.batch_max));
        // The cursor covers every event accepted so far: all of them are in this batch or earlier ones.
        let cursor = self.accepted.or(self.written);
        self.in_flight_events = std::mem::take(&mut self.batch_events);
        self.publish_tallies();
        let write = write_with_retries(
            self.sink.clone(),
            entries,
            cursor,
            self.written,
            self.shutdown.clone(),
            self.cfg.backoff_base,
        );
        self.in_flight = Some(tokio::spawn(write));
        Ok(())
    }

    /// Flushes and waits until everything accepted is in Redis.
    async fn flush_and_settle(&mut self) -> Result<(), IngestError> {
        self.flush().await?;
        self.settle().await
    }

    /// Waits for the transaction in flight, if any, and accounts for it.
    async fn settle(&mut self) -> Result<(), IngestError> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let done = task
            .await
            .map_err(|e| IngestError::Writer(e.to_string()))??;
        self.in_flight_events = 0;
        self.summary.redis_errors += done.redis_errors;
        metrics::histogram!(observe::BATCH_SECONDS).record(done.elapsed.as_secs_f64());
        self.summary.events_written += done.events;
        self.summary.entries_written += done.entries;
        self.stream_len_estimate += done.entries;
        self.written = done.cursor;
        self.sink = done.sink;
        if let Some(cursor) = done.cursor {
            metrics::gauge!(observe::CURSOR).set(cursor as f64);
        }
        if self.stream_len_estimate >= self.cfg.max_stream_len {
            self.backpressure().await;
        }
        Ok(())
    }

    fn publish_tallies(&mut self) {
        let tallies = std::mem::take(&mut self.tallies);
        for (kind, count) in KINDS.iter().zip(tallies.by_kind) {
            if count > 0 {
                metrics::counter!(observe::EVENTS, "type" => kind.as_str()).increment(count);
            }
        }
        metrics::counter!(observe::BYTES).increment(tallies.bytes);
        metrics::counter!(observe::COMMITS_VERIFIED).increment(tallies.verified);
    }

    /// Trims what every group has read; returns false if Redis could not answer.
    async fn refresh_stream_state(&mut self) -> bool {
        match self.sink.trim().await {
            Ok(outcome) => {
                self.stream_len_estimate = outcome.length;
                metrics::gauge!(observe::STREAM_LENGTH).set(outcome.length as f64);
                if let Some(lag) = outcome.max_group_lag {
                    metrics::gauge!(observe::GROUP_LAG).set(lag as f64);
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not trim the stream");
                let _ = self.sink.reconnect().await;
                false
            }
        }
    }

    /// Stops reading the relay while the stream is full of entries some group
    /// has not read yet: trimming them would lose them, growing further would
    /// exhaust Redis memory. The relay keeps the backlog for our cursor.
    async fn backpressure(&mut self) {
        self.refresh_stream_state().await;
        if self.stream_len_estimate < self.cfg.max_stream_len {
            return;
        }
        self.summary.backpressure_pauses += 1;
        metrics::counter!(observe::BACKPRESSURE).increment(1);
        metrics::gauge!(observe::PAUSED).set(1.0);
        tracing::warn!(
            length = self.stream_len_estimate,
            max = self.cfg.max_stream_len,
            "stream full of unread entries; pausing the relay until consumers catch up"
        );
        let paused = Instant::now();
        while self.stream_len_estimate >= self.cfg.max_stream_len {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            self.refresh_stream_state().await;
            self.publish_status(0.0).await;
        }
        metrics::gauge!(observe::PAUSED).set(0.0);
        self.last_frame = Instant::now();
        tracing::info!(
            paused_secs = paused.elapsed().as_secs_f64(),
            length = self.stream_len_estimate,
            "resuming the relay"
        );
    }

    async fn report(&mut self, rate: f64) {
        self.refresh_stream_state().await;
        let relay_now = self
            .cfg
            .relay_clock
            .as_ref()
            .map_or_else(now_unix, RelayClock::now);
        let lag_secs = self
            .last_event_time
            .as_deref()
            .and_then(rfc3339_unix)
            .map(|t| (relay_now - t).max(0.0));
        metrics::gauge!(observe::RATE).set(rate);
        if let Some(lag) = lag_secs {
            metrics::gauge!(observe::LAG_SECONDS).set(lag);
        }
        tracing::info!(
            rate = format!("{rate:.0}/s"),
            total = self.summary.events_written,
            cursor = ?self.written,
            lag_secs = lag_secs.map(|l| format!("{l:.1}")),
            stream_len = self.stream_len_estimate,
            decode_errors = self.summary.decode_errors,
            commits_rejected = self.summary.commits_rejected,
            "ingest progress"
        );
        self.publish_status(rate).await;
    }

    /// The seed-compatible status key, expiring so a dead ingester shows as gone.
    async fn publish_status(&mut self, rate: f64) {
        let status = serde_json::json!({
            "connected": self.connected,
            "events_processed": self.summary.events_written,
            "cursor": self.written,
            "rate": (rate * 10.0).round() / 10.0,
            "updated": rfc3339_now(),
        });
        let ttl = self.cfg.status_interval.as_secs().max(1) * 2;
        if let Err(e) = self.sink.set_status(&status.to_string(), ttl.max(10)).await {
            tracing::debug!(error = %e, "status key not updated");
        }
    }
}
