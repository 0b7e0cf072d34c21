//! One labeler's stream: resolve its endpoint and key, subscribe from the
//! stored cursor, check every label, store each batch with the cursor after
//! it, and reconnect with backoff when the connection ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::{FutureExt, SinkExt, StreamExt};
use skyhose_identity::Resolver;
use skyhose_ingest::backoff::Backoff;
use skyhose_proto::decode::{decode_labels, DecodedLabels};
use skyhose_proto::frame::{Label, LabelEvent};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::check::{self, LabelerIdentity, Rejected};
use crate::{store, LabelsConfig, LabelsError};

/// What one labeler's stream did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelerSummary {
    pub did: String,
    /// The seq of the last event stored.
    pub cursor: i64,
    pub events: u64,
    pub labels_stored: u64,
    /// Labels not stored, by [`Rejected::reason`].
    pub rejected: BTreeMap<&'static str, u64>,
    /// Frames that were not label events, by reason (`malformed`,
    /// `unknown_type`, `error_frame`, `old_seq`).
    pub frames_skipped: BTreeMap<&'static str, u64>,
    pub reconnects: u64,
}

/// Why a connection ended.
enum End {
    Shutdown,
    Closed,
    Stalled,
    Unresolved,
    LabelerError,
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Shutdown => "shutdown",
            End::Closed => "closed",
            End::Stalled => "stalled",
            End::Unresolved => "unresolved",
            End::LabelerError => "labeler_error",
        }
    }
}

pub(crate) struct Stream<'a> {
    cfg: &'a LabelsConfig,
    pool: &'a Pool,
    resolver: &'a Resolver,
    shutdown: &'a CancellationToken,
    id: i32,
    summary: LabelerSummary,
}

impl<'a> Stream<'a> {
    pub(crate) async fn open(
        cfg: &'a LabelsConfig,
        pool: &'a Pool,
        resolver: &'a Resolver,
        shutdown: &'a CancellationToken,
        did: &str,
    ) -> Result<Stream<'a>, LabelsError> {
        let (id, cursor) = store::labeler(pool, did).await?;
        Ok(Stream {
            cfg,
            pool,
            resolver,
            shutdown,
            id,
            summary: LabelerSummary {
                did: did.to_owned(),
                cursor,
                ..LabelerSummary::default()
            },
        })
    }

    pub(crate) async fn run(mut self) -> Result<LabelerSummary, LabelsError> {
        let mut backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_cap);
        tracing::info!(labeler = %self.summary.did, cursor = self.summary.cursor, "reading labels");
        loop {
            let connected_at = Instant::now();
            let end = self.connection().await?;
            if matches!(end, End::Shutdown) {
                break;
            }
            if connected_at.elapsed() >= self.cfg.healthy_reset {
                backoff.reset();
            }
            self.summary.reconnects += 1;
            metrics::counter!("skyhose_labels_reconnects_total", "reason" => end.reason())
                .increment(1);
            let delay = backoff.next_delay();
            tracing::info!(
                labeler = %self.summary.did,
                reason = end.reason(),
                delay_ms = delay.as_millis() as u64,
                cursor = self.summary.cursor,
                "reconnecting to the labeler"
            );
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!(summary = ?self.summary, "labels stopped");
        Ok(self.summary)
    }

    async fn connection(&mut self) -> Result<End, LabelsError> {
        let did = self.summary.did.clone();
        let resolved = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(End::Shutdown),
            resolved = check::identity(self.resolver, &did, false) => resolved,
        };
        let mut identity = match resolved {
            Ok(identity) => identity,
            Err(e) => {
                tracing::warn!(error = %e, "labeler not usable");
                return Ok(End::Unresolved);
            }
        };
        let url = check::subscribe_url(&identity.endpoint, self.summary.cursor);
        let mut ws_config = WebSocketConfig::default();
        ws_config.max_message_size = Some(self.cfg.max_frame_bytes);
        ws_config.max_frame_size = Some(self.cfg.max_frame_bytes);
        let connect = tokio_tungstenite::connect_async_with_config(&url, Some(ws_config), true);
        let mut ws = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(End::Shutdown),
            result = tokio::time::timeout(self.cfg.stall_timeout, connect) => match result {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => {
                    tracing::warn!(url, error = %e, "labeler connection failed");
                    return Ok(End::Closed);
                }
                Err(_) => {
                    tracing::warn!(url, "labeler connection timed out");
                    return Ok(End::Stalled);
                }
            },
        };
        tracing::info!(url, "connected to the labeler");
        let mut last_frame = Instant::now();
        let mut last_ping = Instant::now();
        let mut last_report = Instant::now();
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        loop {
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(End::Shutdown),
                _ = housekeeping.tick() => {
                    if last_frame.elapsed() >= self.cfg.stall_timeout {
                        tracing::warn!(labeler = %did, "labeler stalled");
                        return Ok(End::Stalled);
                    }
                    if last_report.elapsed() >= self.cfg.log_every {
                        last_report = Instant::now();
                        let s = &self.summary;
                        tracing::info!(
                            labeler = %s.did,
                            cursor = s.cursor,
                            events = s.events,
                            labels = s.labels_stored,
                            rejected = s.rejected.values().sum::<u64>(),
                            "labels"
                        );
                    }
                    if last_ping.elapsed() >= self.cfg.ping_interval {
                        last_ping = Instant::now();
                        if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                            return Ok(End::Closed);
                        }
                    }
                    continue;
                }
                message = ws.next() => message,
            };
            last_frame = Instant::now();
            // This frame and those already waiting behind it go in one transaction.
            let mut batch = Batch::default();
            let mut message = first;
            loop {
                match message {
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Some(end) = self.take(&bytes, &mut identity, &mut batch).await {
                            self.flush(batch).await?;
                            return Ok(end);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        self.flush(batch).await?;
                        return Ok(End::Closed);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(labeler = %did, error = %e, "labeler connection error");
                        self.flush(batch).await?;
                        return Ok(End::Closed);
                    }
                }
                if batch.labels.len() >= self.cfg.batch_labels {
                    break;
                }
                match ws.next().now_or_never() {
                    Some(next) => message = next,
                    None => break,
                }
            }
            self.flush(batch).await?;
        }
    }

    /// Takes one frame into `batch`; `Some` ends the connection.
    async fn take(
        &mut self,
        bytes: &[u8],
        identity: &mut LabelerIdentity,
        batch: &mut Batch,
    ) -> Option<End> {
        let event = match decode_labels(bytes) {
            Ok(DecodedLabels::Event(event)) => event,
            Ok(DecodedLabels::Unknown(t)) => {
                tracing::debug!(labeler = %self.summary.did, message_type = %t, "unknown message type skipped");
                self.skip("unknown_type");
                return None;
            }
            Err(e) => {
                tracing::warn!(labeler = %self.summary.did, error = %e, "malformed frame skipped");
                self.skip("malformed");
                return None;
            }
        };
        let labels = match event {
            LabelEvent::Labels(labels) => labels,
            LabelEvent::Info(info) => {
                tracing::info!(labeler = %self.summary.did, name = %info.name, message = ?info.message, "labeler info");
                return None;
            }
            LabelEvent::Error(e) => {
                tracing::warn!(labeler = %self.summary.did, error = %e.error, message = ?e.message, "labeler sent an error");
                self.skip("error_frame");
                if e.error == "FutureCursor" && batch.cursor.is_none() {
                    // The labeler's sequence restarted below our cursor:
                    // read it again from the start; stored labels only
                    // change where the stream has newer ones.
                    self.summary.cursor = 0;
                }
                return Some(End::LabelerError);
            }
        };
        let last = batch.cursor.unwrap_or(self.summary.cursor);
        if labels.seq <= last {
            tracing::debug!(labeler = %self.summary.did, seq = labels.seq, cursor = last, "event at or before the cursor skipped");
            self.skip("old_seq");
            return None;
        }
        batch.cursor = Some(labels.seq);
        batch.events += 1;
        for label in labels.labels {
            match self.check(&label, identity).await {
                Ok(()) => batch.labels.push(label),
                Err(rejected) => {
                    tracing::warn!(labeler = %self.summary.did, seq = labels.seq, uri = %label.uri, val = %label.val, error = %rejected, "label rejected");
                    metrics::counter!("skyhose_labels_rejected_total", "reason" => rejected.reason())
                        .increment(1);
                    *self.summary.rejected.entry(rejected.reason()).or_default() += 1;
                }
            }
        }
        None
    }

    /// A label's checks; a failed signature is checked once more with the
    /// labeler's key fetched again, in case it rotated.
    async fn check(&self, label: &Label, identity: &mut LabelerIdentity) -> Result<(), Rejected> {
        check::fields(label, &self.summary.did)?;
        match check::signed_by(label, &identity.key) {
            Err(Rejected::BadSignature) => {
                if let Ok(fresh) = check::identity(self.resolver, &self.summary.did, true).await {
                    if fresh.key != identity.key {
                        *identity = fresh;
                        return check::signed_by(label, &identity.key);
                    }
                }
                Err(Rejected::BadSignature)
            }
            other => other,
        }
    }

    fn skip(&mut self, reason: &'static str) {
        metrics::counter!("skyhose_labels_frames_skipped_total", "reason" => reason).increment(1);
        *self.summary.frames_skipped.entry(reason).or_default() += 1;
    }

    /// Stores a batch and its cursor, retrying while PostgreSQL fails; when
    /// stopping instead, the batch is left to be read again from the cursor.
    async fn flush(&mut self, batch: Batch) -> Result<(), LabelsError> {
        let Some(cursor) = batch.cursor else {
            return Ok(());
        };
        let mut backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_cap);
        loop {
            match store::store(self.pool, self.id, cursor, &batch.labels).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(labeler = %self.summary.did, error = %e, "storing labels failed; retrying");
                    metrics::counter!("skyhose_labels_store_retries_total").increment(1);
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff.next_delay().max(Duration::from_millis(50))) => {}
                    }
                }
            }
        }
        self.summary.cursor = cursor;
        self.summary.events += batch.events;
        self.summary.labels_stored += batch.labels.len() as u64;
        metrics::counter!("skyhose_labels_stored_total").increment(batch.labels.len() as u64);
        metrics::gauge!("skyhose_labels_cursor", "labeler" => self.summary.did.clone())
            .set(cursor as f64);
        Ok(())
    }
}

/// Labels read but not stored yet, and the seq of the last event among them.
#[derive(Default)]
struct Batch {
    labels: Vec<Label>,
    cursor: Option<i64>,
    events: u64,
}
