//! Helpers shared by the sim's integration tests: an independent recount of the
//! ground truth from decoded frames, and a small subscribeRepos client.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use skyhose_sim::wire::{self, Cid, Value};
use skyhose_sim::{ActorTruth, GroundTruth, PostCounts};
use tokio_tungstenite::tungstenite::Message;

/// Header type (`#commit`, ...) or `error`, and body of a frame.
pub fn parts(frame: &[u8]) -> (String, Value) {
    let (header, body) = wire::decode_frame_parts(frame).expect("frame decodes");
    let t = match header.get("op").and_then(Value::as_i64) {
        Some(-1) => "error".to_owned(),
        _ => header
            .get("t")
            .and_then(Value::as_str)
            .expect("header has t")
            .to_owned(),
    };
    (t, body)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

/// Recomputes the truth from frames alone, following the documented rules.
pub fn recount(frames: &[Vec<u8>]) -> GroundTruth {
    let mut records: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut actors: BTreeMap<String, (Option<String>, String)> = BTreeMap::new();
    for frame in frames {
        let (t, body) = parts(frame);
        match t.as_str() {
            "#identity" => {
                let did = s(&body, &["did"]).unwrap().to_owned();
                let handle = s(&body, &["handle"]).map(str::to_owned);
                let entry = actors.entry(did).or_insert((None, "active".into()));
                entry.0 = handle;
            }
            "#account" => {
                let did = s(&body, &["did"]).unwrap().to_owned();
                let active = body.get("active") == Some(&Value::Bool(true));
                let status = if active {
                    "active".to_owned()
                } else {
                    s(&body, &["status"]).unwrap().to_owned()
                };
                if status == "deleted" {
                    let prefix = format!("at://{did}/");
                    records.retain(|uri, _| !uri.starts_with(&prefix));
                }
                actors.entry(did).or_insert((None, "active".into())).1 = status;
            }
            "#commit" => {
                let repo = s(&body, &["repo"]).unwrap().to_owned();
                let Some(Value::Bytes(car)) = body.get("blocks") else {
                    panic!("commit without blocks")
                };
                let (_, blocks) = wire::read_car(car).expect("car decodes");
                let blocks: HashMap<Cid, Vec<u8>> = blocks.into_iter().collect();
                let Some(Value::List(ops)) = body.get("ops") else {
                    panic!("commit without ops")
                };
                for op in ops {
                    let path = s(op, &["path"]).unwrap();
                    let uri = format!("at://{repo}/{path}");
                    match s(op, &["action"]).unwrap() {
                        "delete" => {
                            records.remove(&uri);
                        }
                        _ => {
                            let Some(Value::Link(cid)) = op.get("cid") else {
                                panic!("create without cid")
                            };
                            let block = blocks.get(cid).expect("record block present");
                            assert_eq!(
                                Cid::for_dag_cbor(block),
                                *cid,
                                "record CID matches its bytes"
                            );
                            let (record, _) = wire::decode_prefix(block).unwrap();
                            records.insert(uri, (cid.to_string(), record));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut truth = GroundTruth::default();
    for (did, (handle, status)) in &actors {
        truth.actors.insert(
            did.clone(),
            ActorTruth {
                handle: handle.clone(),
                status: status.clone(),
                ..Default::default()
            },
        );
    }
    for (uri, (_, record)) in &records {
        if s(record, &["$type"]) == Some("app.bsky.feed.post") {
            truth.posts.insert(uri.clone(), PostCounts::default());
        }
    }
    for (uri, (cid, record)) in &records {
        truth.records.insert(uri.clone(), cid.clone());
        let author = uri.trim_start_matches("at://").split('/').next().unwrap();
        match s(record, &["$type"]).unwrap() {
            "app.bsky.graph.follow" => {
                if let Some(a) = truth.actors.get_mut(author) {
                    a.follows += 1;
                }
                if let Some(a) = truth.actors.get_mut(s(record, &["subject"]).unwrap()) {
                    a.followers += 1;
                }
            }
            "app.bsky.feed.like" => {
                if let Some(p) = truth.posts.get_mut(s(record, &["subject", "uri"]).unwrap()) {
                    p.likes += 1;
                }
            }
            "app.bsky.feed.repost" => {
                if let Some(p) = truth.posts.get_mut(s(record, &["subject", "uri"]).unwrap()) {
                    p.reposts += 1;
                }
            }
            "app.bsky.feed.post" => {
                if let Some(a) = truth.actors.get_mut(author) {
                    a.posts += 1;
                }
                if let Some(parent) = s(record, &["reply", "parent", "uri"]) {
                    if let Some(p) = truth.posts.get_mut(parent) {
                        p.replies += 1;
                    }
                }
                let quoted = match s(record, &["embed", "$type"]) {
                    Some("app.bsky.embed.record") => s(record, &["embed", "record", "uri"]),
                    Some("app.bsky.embed.recordWithMedia") => {
                        s(record, &["embed", "record", "record", "uri"])
                    }
                    _ => None,
                };
                if let Some(q) = quoted.and_then(|q| truth.posts.get_mut(q)) {
                    q.quotes += 1;
                }
            }
            _ => {}
        }
    }
    truth
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(base: &str, cursor: Option<i64>) -> Ws {
    let url = match cursor {
        Some(c) => format!("{base}/xrpc/com.atproto.sync.subscribeRepos?cursor={c}"),
        None => format!("{base}/xrpc/com.atproto.sync.subscribeRepos"),
    };
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connects")
        .0
}

/// What a read produced.
#[derive(Debug, PartialEq)]
pub enum Read {
    Frame(Vec<u8>),
    Closed,
    Silent,
}

pub async fn read(ws: &mut Ws, wait: Duration) -> Read {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return Read::Silent,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Read::Closed,
            Ok(Some(Ok(Message::Binary(b)))) => return Read::Frame(b.to_vec()),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Reads up to `n` frames (fewer if the connection closes or goes silent).
pub async fn read_frames(ws: &mut Ws, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < n {
        match read(ws, Duration::from_secs(5)).await {
            Read::Frame(f) => out.push(f),
            _ => break,
        }
    }
    out
}

pub fn seq_of(frame: &[u8]) -> Option<i64> {
    parts(frame).1.get("seq").and_then(Value::as_i64)
}
