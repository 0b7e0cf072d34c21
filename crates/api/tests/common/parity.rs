//! The parity harness shared by the tests that compare skyhose's answers
//! with the official AppView's recorded ones (`scripts/parity/record.sh`):
//! the recorded fixtures, the one normalisation of both sides, the field by
//! field comparison, and the replay of recorded requests against a server
//! (as the same viewers, with tokens from a loopback PLC stand-in).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use skyhose_sim::plc::{self, PlcConfig, PlcHandle};
use skyhose_sim::SimConfig;

use super::viewer::enc;
use super::{http_request, Server};

pub const AUD: &str = "did:web:api.skyhose.test";

pub fn parity_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity")
}

#[derive(Deserialize)]
pub struct MethodFixture {
    pub method: String,
    pub requests: Vec<Recorded>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub id: String,
    /// Query parameters in order; a repeated name is an array parameter.
    pub params: Vec<(String, String)>,
    pub viewer: Option<String>,
    /// Page on from the cursor of this earlier request's answer.
    pub cursor_from: Option<String>,
    /// Request headers sent besides the viewer's token (labeler choice).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub status: u16,
    /// The answer's `atproto-content-labelers` header, when there was one.
    pub content_labelers: Option<String>,
    pub body: Value,
}

/// `procedures.json`: the private-state writes the recording made, in order.
#[derive(Deserialize)]
pub struct Procedures {
    pub procedures: Vec<ProcedureCall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcedureCall {
    pub method: String,
    pub id: String,
    pub viewer: Option<String>,
    /// The JSON input; `None` sends no body.
    pub input: Option<Value>,
    pub status: u16,
    pub content_type: Option<String>,
    /// `None`: the answer had an empty body.
    pub body: Option<Value>,
}

pub fn load_procedures(dir: &Path) -> Vec<ProcedureCall> {
    let path = dir.join("procedures.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let parsed: Procedures =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parsed.procedures
}

/// What the comparison makes of a content type: JSON or not, present or not.
fn content_kind(content_type: Option<&str>) -> &'static str {
    match content_type {
        None => "none",
        Some(t) if t.starts_with("application/json") => "json",
        Some(_) => "other",
    }
}

/// The labeler DIDs an `atproto-content-labelers` value names, in order,
/// each with its parameters (`;redact`).
fn labeler_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.split_whitespace().collect::<String>())
        .filter(|s| !s.is_empty())
        .collect()
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Known {
    pub reason: String,
    pub differences: Vec<String>,
}

/// The one rule set applied to both answers before comparing them.
/// - `indexedAt` anywhere: each service stamps the time it indexed the record.
/// - the top-level `cursor`: opaque and each service's own; only whether
///   there is one is compared (the next page is asked with each side's own).
/// - an error's `message`: free text; the error name and status are compared.
/// - a bookmark's `createdAt`: when each service took the write, and the
///   replay writes later than the recording did.
pub fn normalise(body: &Value) -> Value {
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
        if let Some(Value::Array(bookmarks)) = map.get_mut("bookmarks") {
            for bookmark in bookmarks.iter_mut().filter_map(Value::as_object_mut) {
                if bookmark.get("createdAt").is_some_and(Value::is_string) {
                    bookmark.insert("createdAt".into(), Value::String("<createdAt>".into()));
                }
            }
        }
    }
    out
}

/// What identifies an item of a list, so lists can be compared item by item
/// and their order told apart from their content.
fn identity(item: &Value) -> Option<String> {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    // A label: one subject carries labels of several labelers and values.
    if let (Some(uri), Some(src), Some(val)) = (
        item.get("uri").and_then(s),
        item.get("src").and_then(s),
        item.get("val").and_then(s),
    ) {
        return Some(format!("{uri} {src} {val}"));
    }
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

pub fn load_fixtures(dir: &Path) -> Vec<MethodFixture> {
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

/// The requests that differ from their recording, keyed `"<method> <id>"`.
pub type Differences = BTreeMap<String, Vec<String>>;

#[derive(Default, Debug)]
pub struct Tally {
    pub methods: usize,
    pub requests: usize,
    pub fields: usize,
    pub matching: usize,
}

/// An API server over `database_url` set up as the recording AppView was,
/// and the PLC stand-in its viewers' tokens verify against.
pub struct Replayer {
    pub server: Server,
    plc: PlcHandle,
    sim: SimConfig,
}

impl Replayer {
    pub async fn start(database_url: &str) -> Replayer {
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
        let ozone = ingest_ozone_labels(database_url, &plc).await;
        let plc_url = plc.url();
        let server = Server::start_on(database_url, move |c| {
            c.plc_url = plc_url;
            c.allow_loopback_identity = true;
            c.service_did = AUD.into();
            // The recording AppView's labelers: ozone and a configured one
            // that does not exist.
            c.labelers = vec![ozone, DEFAULT_EXAMPLE_LABELER.into()];
            // The recording AppView's image host (dev-env's public URL + /img,
            // which names no format).
            c.image_url_pattern = "https://bsky.public.url/img/{preset}/plain/{did}/{cid}".into();
        })
        .await;
        Replayer { server, plc, sim }
    }

    /// Asks every recorded request of `fixtures` (as its viewer, paging on
    /// from this server's own cursors) and compares the answers.
    pub async fn replay(&self, fixtures: &[MethodFixture]) -> (Tally, Differences) {
        let mut tally = Tally::default();
        let mut found = Differences::new();
        let mut cursors: HashMap<String, Option<String>> = HashMap::new();
        for fixture in fixtures {
            tally.methods += 1;
            for req in &fixture.requests {
                tally.requests += 1;
                let key = format!("{} {}", fixture.method, req.id);
                let mut query: Vec<String> = req
                    .params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", enc(v)))
                    .collect();
                if let Some(from) = &req.cursor_from {
                    match cursors.get(&format!("{} {from}", fixture.method)) {
                        Some(Some(c)) => query.push(format!("cursor={}", enc(c))),
                        Some(None) => {}
                        None => panic!("{key}: cursorFrom {from} was not asked before it"),
                    }
                }
                let bearer = self.bearer(req.viewer.as_deref(), &fixture.method);
                let mut headers: Vec<(&str, &str)> = req
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                if let Some(b) = &bearer {
                    headers.push(("authorization", b));
                }
                let path = format!("/xrpc/{}?{}", fixture.method, query.join("&"));
                let res = http_request(self.server.addr, "GET", &path, &headers, None).await;
                let status = res.status;
                let body: Value = serde_json::from_slice(&res.body).unwrap_or_else(|_| {
                    panic!(
                        "{path}: body is not JSON: {}",
                        String::from_utf8_lossy(&res.body)
                    )
                });
                cursors.insert(
                    key.clone(),
                    body.get("cursor")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
                let mut lines = Vec::new();
                tally.fields += 1;
                if status != req.status {
                    lines.push(format!("status: official {}, ours {status}", req.status));
                }
                if let Some(official) = &req.content_labelers {
                    tally.fields += 1;
                    let ours = res.header("atproto-content-labelers").unwrap_or_default();
                    if labeler_list(official) != labeler_list(ours) {
                        lines.push(format!(
                            "header atproto-content-labelers: official {official:?}, ours {ours:?}"
                        ));
                    }
                }
                diff(
                    "",
                    &normalise(&req.body),
                    &normalise(&body),
                    &mut lines,
                    &mut tally.fields,
                );
                if lines.is_empty() {
                    tally.matching += 1;
                } else {
                    found.insert(key, lines);
                }
            }
        }
        (tally, found)
    }

    /// A service-auth token of `viewer` for `method`, its DID known to the
    /// PLC stand-in.
    fn bearer(&self, viewer: Option<&str>, method: &str) -> Option<String> {
        viewer.map(|did| {
            self.plc.register(did, "handle.invalid");
            format!(
                "Bearer {}",
                plc::mint_service_auth(&self.sim, did, AUD, method, 300)
            )
        })
    }

    /// Makes every recorded procedure call in order (as its viewer) and
    /// compares status, content type and body; keyed like requests.
    pub async fn call_procedures(&self, calls: &[ProcedureCall]) -> (Tally, Differences) {
        let mut tally = Tally::default();
        let mut found = Differences::new();
        let methods: BTreeSet<&str> = calls.iter().map(|c| c.method.as_str()).collect();
        tally.methods = methods.len();
        for call in calls {
            tally.requests += 1;
            let key = format!("{} {}", call.method, call.id);
            let bearer = self.bearer(call.viewer.as_deref(), &call.method);
            let body = call
                .input
                .as_ref()
                .map(|v| serde_json::to_vec(v).expect("procedure input"));
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if let Some(b) = &bearer {
                headers.push(("authorization", b));
            }
            if body.is_some() {
                headers.push(("content-type", "application/json"));
            }
            let path = format!("/xrpc/{}", call.method);
            let res =
                http_request(self.server.addr, "POST", &path, &headers, body.as_deref()).await;
            let mut lines = Vec::new();
            tally.fields += 2;
            if res.status != call.status {
                lines.push(format!(
                    "status: official {}, ours {}",
                    call.status, res.status
                ));
            }
            let (official_kind, ours_kind) = (
                content_kind(call.content_type.as_deref()),
                content_kind(res.header("content-type")),
            );
            if official_kind != ours_kind {
                lines.push(format!(
                    "content type: official {official_kind}, ours {ours_kind}"
                ));
            }
            let ours = if res.body.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&res.body).unwrap_or_else(
                    |_| serde_json::json!({ "nonJsonBody": String::from_utf8_lossy(&res.body) }),
                ))
            };
            match (&call.body, &ours) {
                (None, None) => {}
                (Some(official), Some(ours)) => diff(
                    "",
                    &normalise(official),
                    &normalise(ours),
                    &mut lines,
                    &mut tally.fields,
                ),
                (official, ours) => lines.push(format!(
                    "body: official {}, ours {}",
                    official.as_ref().map_or("empty".into(), short),
                    ours.as_ref().map_or("empty".into(), short)
                )),
            }
            if lines.is_empty() {
                tally.matching += 1;
            } else {
                found.insert(key, lines);
            }
        }
        (tally, found)
    }

    pub async fn shutdown(self) {
        drop(self.server);
        self.plc.shutdown().await;
    }
}

/// The recording AppView's second default labeler, which has no account.
const DEFAULT_EXAMPLE_LABELER: &str = "did:example:labeler";

/// Reads ozone's recorded label stream (`labels.cap`) into `database_url`
/// through the labels stage, as `skyhose labels` would: ozone's recorded DID
/// document, its endpoint pointed at a loopback server of the capture, and
/// every label's signature checked. Returns ozone's DID.
async fn ingest_ozone_labels(database_url: &str, plc: &PlcHandle) -> String {
    let dids: Value =
        serde_json::from_slice(&std::fs::read(parity_dir().join("dids.json")).expect("dids.json"))
            .expect("dids.json is JSON");
    let did = dids["ozone"]["did"]
        .as_str()
        .expect("ozone's DID")
        .to_owned();
    let labeler = skyhose_sim::labeler::start(skyhose_sim::labeler::LabelerConfig {
        capture: Some(parity_dir().join("labels.cap")),
        ..Default::default()
    })
    .await
    .expect("labels.cap served");
    let mut document = dids["ozone"]["document"].clone();
    for service in document["service"].as_array_mut().into_iter().flatten() {
        if service["id"] == "#atproto_labeler" {
            service["serviceEndpoint"] = Value::String(labeler.url());
        }
    }
    plc.register_document(&did, document);
    let pool = skyhose_index::connect_pool(database_url, 2).expect("pool");
    skyhose_index::migrate(&pool).await.expect("migrate");
    let resolver = std::sync::Arc::new(skyhose_identity::Resolver::new(
        skyhose_identity::IdentityConfig::loopback(plc.url()),
    ));
    let stop = skyhose_labels::CancellationToken::new();
    let task = tokio::spawn(skyhose_labels::run(
        skyhose_labels::LabelsConfig::new(vec![did.clone()]),
        pool.clone(),
        resolver,
        stop.clone(),
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let cursor: Option<i64> = pool
            .get()
            .await
            .expect("connection")
            .query_opt("SELECT cursor FROM labelers WHERE did = $1", &[&did])
            .await
            .expect("labelers")
            .map(|r| r.get("cursor"));
        if cursor == Some(labeler.head_seq()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ozone's labels not read in 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.cancel();
    let summaries = task.await.expect("labels task").expect("labels");
    assert!(
        summaries.iter().all(|s| s.rejected.is_empty()),
        "ozone's labels rejected: {summaries:?}"
    );
    labeler.shutdown().await;
    did
}

/// A list of known differences, by file name under the parity directory.
pub fn known_path(file: &str) -> PathBuf {
    parity_dir().join(file)
}

/// The differences listed with their reasons, keyed `"<method> <id>"`.
pub fn load_known(file: &str) -> BTreeMap<String, Known> {
    std::fs::read(known_path(file))
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("known differences json"))
        .unwrap_or_default()
}

/// Checks `found` against the list in `file`: every difference listed
/// exactly, and nothing listed that no longer differs. With `PARITY_BLESS`
/// set, rewrites the list instead (keeping the reasons written).
pub fn check_known(found: &Differences, file: &str) {
    let known = load_known(file);
    if std::env::var_os("PARITY_BLESS").is_none() {
        let problems = problems(found, &known);
        assert!(
            problems.is_empty(),
            "{} parity problems against {file}:\n{}",
            problems.len(),
            problems.join("\n")
        );
        return;
    }
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
    std::fs::write(known_path(file), text).expect("write known differences");
    println!("parity: rewrote {}", known_path(file).display());
}

/// What in `found` is not listed exactly in `known`, and what is listed but
/// no longer differs.
fn problems(found: &Differences, known: &BTreeMap<String, Known>) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, lines) in found {
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
    problems
}
