//! Parity with the official Bluesky AppView. `scripts/parity/record.sh` ran
//! the reference PDS and the official `bsky` AppView (`@atproto/dev-env`),
//! drove activity through the PDS and recorded its `subscribeRepos` frames and
//! the AppView's answers to every method skyhose serves. This test indexes
//! the same frames, replays every request (as the same viewer, with tokens
//! from a loopback PLC stand-in) and compares the answers field by field
//! after one normalisation (`normalise`). Requests that still differ are
//! listed, with their reason, in `parity/known_differences.json`, which must
//! match exactly: a new difference fails, and so does a listed one that is
//! gone. `PARITY_BLESS=1` rewrites that list (keeping the reasons written).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use common::viewer::enc;
use common::{drop_stale_databases, index_entries, unique_id, Server};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use skyhose_ingest::{event_to_entry_with, Compat, ConvertOptions};
use skyhose_proto::decode::{decode, Decoded};
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::SimConfig;

const AUD: &str = "did:web:api.skyhose.test";

fn parity_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity")
}

#[derive(Deserialize)]
struct MethodFixture {
    method: String,
    requests: Vec<Recorded>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recorded {
    id: String,
    /// Query parameters in order; a repeated name is an array parameter.
    params: Vec<(String, String)>,
    viewer: Option<String>,
    /// Page on from the cursor of this earlier request's answer.
    cursor_from: Option<String>,
    status: u16,
    body: Value,
}

#[derive(Serialize, Deserialize, Clone)]
struct Known {
    reason: String,
    differences: Vec<String>,
}

/// The one rule set applied to both answers before comparing them.
/// - `indexedAt` anywhere: each service stamps the time it indexed the record.
/// - the top-level `cursor`: opaque and each service's own; only whether
///   there is one is compared (the next page is asked with each side's own).
/// - an error's `message`: free text; the error name and status are compared.
fn normalise(body: &Value) -> Value {
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let v = if k == "indexedAt" && v.is_string() {
                        Value::String("<indexedAt>".into())
                    } else {
                        walk(v)
                    };
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(walk).collect()),
            other => other.clone(),
        }
    }
    let mut out = walk(body);
    if let Value::Object(map) = &mut out {
        if map.get("cursor").is_some_and(Value::is_string) {
            map.insert("cursor".into(), Value::String("<cursor>".into()));
        }
        if map.contains_key("error") && map.contains_key("message") {
            map.insert("message".into(), Value::String("<message>".into()));
        }
    }
    out
}

/// What identifies an item of a list, so lists can be compared item by item
/// and their order told apart from their content.
fn identity(item: &Value) -> Option<String> {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    if let Some(uri) = item.get("uri").and_then(s) {
        return Some(uri);
    }
    if let Some(did) = item.get("did").and_then(s) {
        return Some(did);
    }
    if let Some(post) = item.get("post").and_then(|p| p.get("uri")).and_then(s) {
        let by = item
            .get("reason")
            .and_then(|r| r.get("by"))
            .and_then(|b| b.get("did"))
            .and_then(s);
        return Some(match by {
            Some(by) => format!("{post} reposted by {by}"),
            None => post,
        });
    }
    if let Some(actor) = item.get("actor").and_then(|a| a.get("did")).and_then(s) {
        return Some(actor);
    }
    if let Some(subject) = item.get("subject").and_then(|a| a.get("did")).and_then(s) {
        return Some(subject);
    }
    None
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 120 {
        format!("{}…", &text[..text.floor_char_boundary(117)])
    } else {
        text
    }
}

/// Compares `ours` with `official`, appending a readable line per difference
/// and counting the official answer's leaf fields compared.
fn diff(path: &str, official: &Value, ours: &Value, out: &mut Vec<String>, fields: &mut usize) {
    match (official, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => diff(&p, av, bv, out, fields),
                    None => {
                        *fields += leaves(av);
                        out.push(format!("missing {p} (official: {})", short(av)));
                    }
                }
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    out.push(format!("extra {path}.{k} (ours: {})", short(bv)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let ids_a: Option<Vec<String>> = a.iter().map(identity).collect();
            let ids_b: Option<Vec<String>> = b.iter().map(identity).collect();
            match (ids_a, ids_b) {
                (Some(ia), Some(ib)) if !a.is_empty() || !b.is_empty() => {
                    let by_id: HashMap<&str, &Value> =
                        ib.iter().map(String::as_str).zip(b.iter()).collect();
                    let set_a: BTreeSet<&str> = ia.iter().map(String::as_str).collect();
                    let set_b: BTreeSet<&str> = ib.iter().map(String::as_str).collect();
                    for (id, av) in ia.iter().zip(a) {
                        let p = format!("{path}[{id}]");
                        match by_id.get(id.as_str()) {
                            Some(bv) => diff(&p, av, bv, out, fields),
                            None => {
                                *fields += leaves(av);
                                out.push(format!("missing item {p}"));
                            }
                        }
                    }
                    for id in set_b.difference(&set_a) {
                        out.push(format!("extra item {path}[{id}]"));
                    }
                    let common_a: Vec<&str> = ia
                        .iter()
                        .map(String::as_str)
                        .filter(|i| set_b.contains(i))
                        .collect();
                    let common_b: Vec<&str> = ib
                        .iter()
                        .map(String::as_str)
                        .filter(|i| set_a.contains(i))
                        .collect();
                    if common_a != common_b {
                        out.push(format!(
                            "order {path}: official {common_a:?}, ours {common_b:?}"
                        ));
                    }
                }
                _ => {
                    if a.len() != b.len() {
                        out.push(format!(
                            "length {path}: official {}, ours {}",
                            a.len(),
                            b.len()
                        ));
                    }
                    for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                        diff(&format!("{path}[{i}]"), av, bv, out, fields);
                    }
                    for av in a.iter().skip(b.len()) {
                        *fields += leaves(av);
                    }
                }
            }
        }
        (a, b) => {
            *fields += 1;
            if a != b {
                out.push(format!(
                    "value {path}: official {}, ours {}",
                    short(a),
                    short(b)
                ));
            }
        }
    }
}

fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaves).sum(),
        Value::Array(a) => a.iter().map(leaves).sum(),
        _ => 1,
    }
}

fn load_fixtures(dir: &Path) -> Vec<MethodFixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("fixtures"))
        .expect("parity fixtures directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            serde_json::from_slice(&std::fs::read(p).expect("read fixture"))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_official_appview() {
    let dir = parity_dir();
    if !dir.join("fixtures").exists() {
        // Not recorded yet in this checkout: say so loudly rather than fail
        // every run of the suite before the first recording is committed.
        eprintln!(
            "parity: no fixtures in {}: record them with scripts/parity/record.sh",
            dir.display()
        );
        return;
    }
    let fixtures = load_fixtures(&dir);
    let served: BTreeSet<&str> = skyhose_api::METHODS.iter().copied().collect();
    let recorded: BTreeSet<&str> = fixtures.iter().map(|f| f.method.as_str()).collect();
    let unrecorded: Vec<&&str> = served.difference(&recorded).collect();

    // Index the recorded frames through ingest's conversion and the index.
    let frames =
        skyhose_sim::capture::read_capture(&dir.join("frames.cap")).expect("recorded frames");
    let opts = ConvertOptions {
        compat: Compat::Full,
        verify_cids: true,
    };
    let entries: Vec<_> = frames
        .iter()
        .enumerate()
        .filter_map(|(i, frame)| match decode(frame) {
            Ok(Decoded::Event(ev)) => event_to_entry_with(&ev, opts).expect("recorded event"),
            Ok(Decoded::Unknown(_)) => None,
            Err(e) => panic!("recorded frame {i} does not decode: {e}"),
        })
        .collect();
    let id = unique_id();
    let database_url = format!("postgres://postgres@127.0.0.1:5432/skyhose_apitest_{id}");
    drop_stale_databases().await;
    index_entries(&database_url, &format!("parity:{id}"), entries.into_iter()).await;

    // Viewers: the recorded DIDs, with keys the stand-in directory knows.
    let sim = SimConfig {
        seed: 25,
        accounts: 1,
        ..SimConfig::default()
    };
    let plc = plc::start(PlcConfig {
        sim: sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .expect("plc stand-in");
    let plc_url = plc.url();
    let server = Server::start_on(&database_url, move |c| {
        c.plc_url = plc_url;
        c.service_did = AUD.into();
        // The recording AppView's image host (dev-env's public URL + /img).
        c.image_url_pattern = "https://bsky.public.url/img/{preset}/plain/{did}/{cid}@jpeg".into();
    })
    .await;

    let mut methods = 0;
    let mut requests = 0;
    let mut fields = 0;
    let mut matching = 0;
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cursors: HashMap<String, Option<String>> = HashMap::new();
    for fixture in &fixtures {
        methods += 1;
        for req in &fixture.requests {
            requests += 1;
            let mut query: Vec<String> = req
                .params
                .iter()
                .map(|(k, v)| format!("{k}={}", enc(v)))
                .collect();
            if let Some(from) = &req.cursor_from {
                match cursors.get(from) {
                    Some(Some(c)) => query.push(format!("cursor={}", enc(c))),
                    Some(None) => {}
                    None => panic!("{}: cursorFrom {from} was not asked before it", req.id),
                }
            }
            let bearer = req.viewer.as_deref().map(|did| {
                plc.register(did, "handle.invalid");
                plc::mint_service_auth(&sim, did, AUD, &fixture.method, 300)
            });
            let (status, body) = server
                .get_with(&fixture.method, &query.join("&"), bearer.as_deref())
                .await;
            cursors.insert(
                req.id.clone(),
                body.get("cursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
            let mut lines = Vec::new();
            fields += 1;
            if status != req.status {
                lines.push(format!("status: official {}, ours {status}", req.status));
            }
            diff(
                "",
                &normalise(&req.body),
                &normalise(&body),
                &mut lines,
                &mut fields,
            );
            if lines.is_empty() {
                matching += 1;
            } else {
                found.insert(req.id.clone(), lines);
            }
        }
    }

    let known_path = dir.join("known_differences.json");
    let known: BTreeMap<String, Known> = std::fs::read(&known_path)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("known_differences.json"))
        .unwrap_or_default();
    println!(
        "parity: {methods} methods, {requests} requests, {fields} compared fields, \
         {matching} requests match, {} differ",
        found.len()
    );
    let mut problems = Vec::new();
    for (id, lines) in &found {
        match known.get(id) {
            Some(k) if &k.differences == lines => {}
            Some(_) => problems.push(format!(
                "{id}: differs otherwise than listed:\n  {}",
                lines.join("\n  ")
            )),
            None => problems.push(format!("{id}: new difference:\n  {}", lines.join("\n  "))),
        }
    }
    for id in known.keys() {
        if !found.contains_key(id) {
            problems.push(format!(
                "{id}: listed as differing but now matches: remove it"
            ));
        }
    }
    if std::env::var_os("PARITY_BLESS").is_some() {
        let blessed: BTreeMap<String, Known> = found
            .iter()
            .map(|(id, lines)| {
                let reason = known
                    .get(id)
                    .map(|k| k.reason.clone())
                    .unwrap_or_else(|| "not investigated yet".into());
                (
                    id.clone(),
                    Known {
                        reason,
                        differences: lines.clone(),
                    },
                )
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&blessed).expect("known json");
        text.push('\n');
        std::fs::write(&known_path, text).expect("write known_differences.json");
        println!("parity: rewrote {}", known_path.display());
    } else {
        assert!(
            problems.is_empty(),
            "{} parity problems:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    assert!(
        unrecorded.is_empty(),
        "methods served but not recorded: {unrecorded:?} (re-record with scripts/parity/record.sh)"
    );
    plc.shutdown().await;
}
