//! Simulated labelers: each one a WebSocket server for
//! `com.atproto.label.subscribeLabels` serving a fixed, signed script of
//! labels, with the ground truth of the state those labels must leave.
//!
//! The script holds what a label consumer must get right: negations (some
//! sent before the label they negate, with the later `cts`), replays of the
//! same label, re-labels after a negation, expired labels and labels that
//! expire far in the future, labels on accounts, on records and on one
//! version (CID) of a record, and labels whose signature is wrong. Each
//! labeler's DID document is served by the simulated PLC directory
//! (`plc::PlcHandle::register_labeler`), with its endpoint as the
//! `#atproto_labeler` service and its key as `#atproto_label`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use data_encoding::BASE32_NOPAD;
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::network::SimConfig;
use crate::plc::proto_signing_key;
use crate::rng::SplitMix64;
use crate::wire::{encode_label_frame, ErrorFrame, Label, LabelEvent, Labels};

pub const SUBSCRIBE_LABELS_PATH: &str = "/xrpc/com.atproto.label.subscribeLabels";

/// Label values the script picks from.
const VALUES: [&str; 5] = ["spam", "porn", "graphic-media", "rude", "misleading"];
/// The scripted labels' `cts` start here (2026-01-01T00:00:00Z) and step by
/// one second, so every expiry in the script is long past.
const START_MICROS: i64 = 1_767_225_600_000_000;
/// The expiry of labels that must still be in force (2100-01-01T00:00:00Z).
const FAR_FUTURE: &str = "2100-01-01T00:00:00.000Z";

#[derive(Debug, Clone)]
pub struct LabelerConfig {
    pub listen: SocketAddr,
    pub sim: SimConfig,
    /// Which of the simulation's labelers this is (its DID and key follow).
    pub index: u32,
    /// What the labels are about: account DIDs and record AT-URIs.
    pub subjects: Vec<String>,
    /// A pause before each event a connection sends, so a consumer can be
    /// stopped in the middle of the stream.
    pub interval: Option<Duration>,
    /// Close each connection (without a close frame) after this many events.
    pub drop_every: Option<u64>,
    /// Serve the frames of this capture (a recorded subscribeLabels stream)
    /// instead of a script; `index` and `subjects` are then unused.
    pub capture: Option<std::path::PathBuf>,
}

impl Default for LabelerConfig {
    fn default() -> Self {
        LabelerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sim: SimConfig::default(),
            index: 0,
            subjects: Vec::new(),
            interval: None,
            drop_every: None,
            capture: None,
        }
    }
}

/// The simulated labeler number `index`'s DID: a valid `did:plc` derived
/// from the seed.
pub fn labeler_did(sim: &SimConfig, index: u32) -> String {
    let digest = Sha256::new()
        .chain_update(sim.seed.to_be_bytes())
        .chain_update(b"labeler")
        .chain_update(index.to_be_bytes())
        .finalize();
    let id = BASE32_NOPAD.encode(&digest).to_ascii_lowercase();
    format!("did:plc:{}", id.get(..24).unwrap_or_default())
}

/// The labeler's handle, as its DID document claims it.
pub fn labeler_handle(index: u32) -> String {
    format!("labeler{index}.sim.test")
}

/// The final state a consumer must reach: per (src, uri, val), the label
/// with the latest `cts` among the validly signed ones (negations and
/// expired labels included, as rows), and how many labels carry a bad
/// signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelTruth {
    pub labels: BTreeMap<(String, String, String), Label>,
    pub bad_signatures: u64,
}

impl LabelTruth {
    /// The labels in force at `now` (an RFC 3339 time in the script's
    /// format): neither negated nor expired.
    pub fn in_force(&self, now: &str) -> Vec<&Label> {
        self.labels
            .values()
            .filter(|l| !l.neg && l.exp.as_deref().is_none_or(|exp| exp > now))
            .collect()
    }
}

/// A labeler's script: the `#labels` events in the order served, seq from 1.
#[derive(Debug, Clone)]
pub struct LabelScript {
    pub did: String,
    pub events: Vec<Labels>,
    pub truth: LabelTruth,
}

/// Builds the script of labeler `index` over `subjects`.
pub fn script(sim: &SimConfig, index: u32, subjects: &[String]) -> LabelScript {
    let did = labeler_did(sim, index);
    let key = proto_signing_key(sim, &did);
    let mut rng = SplitMix64::new(sim.seed ^ 0x1abe_1000 ^ u64::from(index));
    let mut tick = 0i64;
    let mut cts = || {
        tick += 1;
        crate::clock::rfc3339(START_MICROS + tick * 1_000_000)
    };
    // Labels in the order they are sent, and whether each is badly signed.
    let mut sent: Vec<(Label, bool)> = Vec::new();
    let make = |uri: &str, val: &str, neg: bool, cts: String| Label {
        ver: Some(1),
        src: did.clone(),
        uri: uri.to_owned(),
        cid: None,
        val: val.to_owned(),
        neg,
        cts,
        exp: None,
        sig: None,
    };
    for (n, uri) in subjects.iter().enumerate() {
        let val = VALUES[rng.below(VALUES.len())];
        match n % 9 {
            // A label.
            0 => sent.push((make(uri, val, false, cts()), false)),
            // A label, then its negation.
            1 => {
                sent.push((make(uri, val, false, cts()), false));
                sent.push((make(uri, val, true, cts()), false));
            }
            // The negation arrives first; the label it negates is older.
            2 => {
                let older = cts();
                sent.push((make(uri, val, true, cts()), false));
                sent.push((make(uri, val, false, older), false));
            }
            // Label, negation, label again.
            3 => {
                sent.push((make(uri, val, false, cts()), false));
                sent.push((make(uri, val, true, cts()), false));
                sent.push((make(uri, val, false, cts()), false));
            }
            // The same label twice.
            4 => {
                let label = make(uri, val, false, cts());
                sent.push((label.clone(), false));
                sent.push((label, false));
            }
            // Expired long ago, and in force until far in the future.
            5 => {
                let mut expired = make(uri, val, false, cts());
                expired.exp = Some(cts());
                sent.push((expired, false));
                let mut lasting = make(uri, "rude", false, cts());
                lasting.exp = Some(FAR_FUTURE.to_owned());
                sent.push((lasting, false));
            }
            // One version of a record.
            6 => {
                let mut label = make(uri, val, false, cts());
                label.cid = Some(subject_cid(uri));
                sent.push((label, false));
            }
            // A forged label, and a forged negation of a real one.
            7 => {
                sent.push((make(uri, val, false, cts()), true));
                let real = make(uri, "misleading", false, cts());
                sent.push((real, false));
                sent.push((make(uri, "misleading", true, cts()), true));
            }
            // The moderation service's takedown.
            _ => sent.push((make(uri, "!takedown", false, cts()), false)),
        }
    }
    let mut truth = LabelTruth::default();
    for (label, forged) in &mut sent {
        let signed = key.sign(&label.signing_bytes());
        let mut sig = signed.to_vec();
        if *forged {
            if let Some(first) = sig.first_mut() {
                *first ^= 0x55;
            }
            truth.bad_signatures += 1;
        } else {
            let slot = (label.src.clone(), label.uri.clone(), label.val.clone());
            match truth.labels.get(&slot) {
                Some(kept) if kept.cts >= label.cts => {}
                _ => {
                    let mut kept = label.clone();
                    kept.sig = Some(sig.clone());
                    truth.labels.insert(slot, kept);
                }
            }
        }
        label.sig = Some(sig);
    }
    // One to three labels an event.
    let mut events = Vec::new();
    let mut labels = sent.into_iter().map(|(l, _)| l).peekable();
    while labels.peek().is_some() {
        let take = 1 + rng.below(3);
        events.push(Labels {
            seq: events.len() as i64 + 1,
            labels: labels.by_ref().take(take).collect(),
        });
    }
    LabelScript { did, events, truth }
}

/// A CID-shaped string for a record version, derived from its URI.
fn subject_cid(uri: &str) -> String {
    skyhose_proto::Cid::for_dag_cbor(uri.as_bytes()).to_string()
}

pub struct LabelerHandle {
    addr: SocketAddr,
    script: Arc<LabelScript>,
    head: i64,
    shutdown_tx: watch::Sender<bool>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl LabelerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://HOST:PORT`, the `#atproto_labeler` endpoint of its DID document.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn did(&self) -> &str {
        &self.script.did
    }

    pub fn script(&self) -> &LabelScript {
        &self.script
    }

    /// The seq of the last event.
    pub fn head_seq(&self) -> i64 {
        self.head
    }

    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        self.acceptor.abort();
        let _ = (&mut self.acceptor).await;
    }
}

/// The frames a labeler serves, with their seqs, in order.
type Frames = Arc<Vec<(i64, Bytes)>>;

pub async fn start(cfg: LabelerConfig) -> std::io::Result<LabelerHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let (script, frames) = match &cfg.capture {
        Some(path) => recorded(path)?,
        None => {
            let script = script(&cfg.sim, cfg.index, &cfg.subjects);
            let frames = script
                .events
                .iter()
                .map(|e| {
                    let frame = encode_label_frame(&LabelEvent::Labels(e.clone()));
                    (e.seq, Bytes::from(frame))
                })
                .collect();
            (script, frames)
        }
    };
    let head = frames.last().map_or(0, |(seq, _)| *seq);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let frames: Frames = Arc::new(frames);
    let acceptor = tokio::spawn(accept_loop(listener, frames, cfg, shutdown_rx));
    Ok(LabelerHandle {
        addr,
        script: Arc::new(script),
        head,
        shutdown_tx,
        acceptor,
    })
}

/// A capture's frames, each with the seq of its `#labels` event, and the
/// events as a script (its `did` the labels' source; a recording has no
/// truth of its own).
fn recorded(path: &std::path::Path) -> std::io::Result<(LabelScript, Vec<(i64, Bytes)>)> {
    let mut reader = crate::capture::CaptureReader::open(path).map_err(std::io::Error::other)?;
    let mut frames = Vec::new();
    let mut events = Vec::new();
    while let Some(frame) = reader.next_frame().map_err(std::io::Error::other)? {
        let decoded =
            skyhose_proto::decode::decode_labels(&frame).map_err(std::io::Error::other)?;
        if let skyhose_proto::decode::DecodedLabels::Event(LabelEvent::Labels(labels)) = decoded {
            frames.push((labels.seq, Bytes::from(frame)));
            events.push(labels);
        }
    }
    let did = events
        .iter()
        .flat_map(|e| e.labels.first())
        .map(|l| l.src.clone())
        .next()
        .unwrap_or_default();
    Ok((
        LabelScript {
            did,
            events,
            truth: LabelTruth::default(),
        },
        frames,
    ))
}

async fn accept_loop(
    listener: TcpListener,
    frames: Frames,
    cfg: LabelerConfig,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "labeler: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (frames, cfg, shutdown) = (frames.clone(), cfg.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(stream, &frames, &cfg, shutdown).await {
                tracing::debug!(error = %e, "labeler: consumer connection ended");
            }
        });
    }
}

/// Reads `cursor` from the request; `Err` holds the HTTP rejection.
async fn serve(
    stream: TcpStream,
    frames: &[(i64, Bytes)],
    cfg: &LabelerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let (ws, cursor) = crate::relay::accept_subscription(stream, SUBSCRIBE_LABELS_PATH).await?;
    let cursor = cursor.unwrap_or(0);
    let (mut sink, mut incoming) = ws.split();
    let head = frames.last().map_or(0, |(seq, _)| *seq);
    if cursor > head {
        let frame = encode_label_frame(&LabelEvent::Error(ErrorFrame {
            error: "FutureCursor".into(),
            message: Some(format!("cursor {cursor} is ahead of head {head}")),
        }));
        sink.send(Message::Binary(Bytes::from(frame))).await?;
        sink.close().await?;
        return Ok(());
    }
    for (sent, (_, frame)) in frames.iter().filter(|(seq, _)| *seq > cursor).enumerate() {
        if let Some(pause) = cfg.interval {
            sink.flush().await?;
            let stopping = tokio::select! {
                _ = tokio::time::sleep(pause) => false,
                stop = shutdown.wait_for(|stop| *stop) => stop.is_ok(),
            };
            if stopping {
                return Ok(());
            }
        }
        sink.feed(Message::Binary(frame.clone())).await?;
        if cfg.drop_every.is_some_and(|n| sent as u64 + 1 >= n) {
            // An abrupt drop: no close frame, like a network failure.
            sink.flush().await?;
            return Ok(());
        }
    }
    sink.flush().await?;
    // Caught up: the stream stays open, as a labeler's does, until either side leaves.
    let stopping = tokio::select! {
        stop = shutdown.wait_for(|stop| *stop) => stop.is_ok(),
        _ = async { while let Some(Ok(msg)) = incoming.next().await { if msg.is_close() { break; } } } => false,
    };
    if stopping {
        let _ = sink.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects() -> Vec<String> {
        (0..18)
            .map(|i| {
                format!(
                    "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaa{}/app.bsky.feed.post/3l{i}",
                    i % 8 + 2
                )
            })
            .collect()
    }

    #[test]
    fn scripts_are_deterministic_and_signed_with_the_labeler_key() {
        let sim = SimConfig::default();
        let a = script(&sim, 0, &subjects());
        let b = script(&sim, 0, &subjects());
        assert_eq!(a.events, b.events);
        assert_ne!(a.did, labeler_did(&sim, 1));
        assert!(skyhose_proto::syntax::is_did(&a.did));
        let key = proto_signing_key(&sim, &a.did).public_key();
        let (mut good, mut bad) = (0, 0);
        for label in a.events.iter().flat_map(|e| &e.labels) {
            let sig = label.sig.as_deref().unwrap();
            if key.verify(&label.signing_bytes(), sig) {
                good += 1;
            } else {
                bad += 1;
            }
        }
        assert_eq!(bad, a.truth.bad_signatures);
        assert!(good > 0 && bad > 0);
        // Negations, expiries and labels in force are all in the truth.
        assert!(a.truth.labels.values().any(|l| l.neg));
        assert!(a.truth.labels.values().any(|l| l.cid.is_some()));
        let in_force = a.truth.in_force("2026-12-01T00:00:00.000Z");
        assert!(in_force.len() < a.truth.labels.len());
        assert!(in_force.iter().any(|l| l.exp.is_some()));
    }
}
