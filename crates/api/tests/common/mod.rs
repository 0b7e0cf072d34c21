//! Shared by the API tests: one database indexed from the simulator per test
//! binary (built once, through the real stream and index workers), an API
//! server on a free loopback port per test, and the npm-based independent
//! checkers.

#![allow(dead_code)]

pub mod parity;
pub mod viewer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use skyhose_api::{ApiConfig, AppState};
use skyhose_index::{CancellationToken, IndexConfig};
use skyhose_ingest::{event_to_entry, Compat, StreamEntry};
use skyhose_sim::{GroundTruth, Network, SimConfig};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const EVENTS: usize = 40_000;

pub struct Fixture {
    pub database_url: String,
    pub sim: SimConfig,
    pub truth: GroundTruth,
}

pub fn sim_config() -> SimConfig {
    SimConfig {
        seed: 42,
        accounts: 300,
        ..SimConfig::default()
    }
}

/// The indexed fixture database, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(build_fixture())
        })
        .join()
        .expect("fixture thread")
    })
}

async fn build_fixture() -> Fixture {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let id = unique_id();
    let database_url = format!("postgres://postgres@127.0.0.1:5432/skyhose_apitest_{id}");
    drop_stale_databases().await;

    let sim = sim_config();
    let mut network = Network::new(sim.clone());
    let entries = (0..EVENTS).filter_map(|_| {
        event_to_entry(&network.next_event(), Compat::Full).expect("simulated event converts")
    });
    index_entries(&database_url, &format!("apitest:{id}"), entries).await;
    Fixture {
        database_url,
        sim,
        truth: network.truth(),
    }
}

/// A unique suffix for this process's databases and keys; the process id
/// first, so `drop_stale_databases` can tell whose they are.
pub fn unique_id() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() % 1_000_000_000)
            .unwrap_or(0)
    )
}

/// Indexes `entries` into `database_url` through the real stream and index
/// workers: XADD to a stream of this test's own, then run the index until
/// it has drained it.
pub async fn index_entries(
    database_url: &str,
    key_prefix: &str,
    entries: impl Iterator<Item = StreamEntry>,
) {
    let stream_key = format!("test:{key_prefix}:events");
    let client = redis::Client::open(REDIS_URL).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for entry in entries {
        pipe.cmd("XADD")
            .arg(&stream_key)
            .arg("*")
            .arg("type")
            .arg(entry.kind.as_str())
            .arg("data")
            .arg(&entry.data)
            .arg("seq")
            .arg(entry.seq.to_string())
            .ignore();
        queued += 1;
        if queued == 2000 {
            let _: () = pipe.query_async(&mut conn).await.expect("XADD");
            pipe = redis::pipe();
            queued = 0;
        }
    }
    if queued > 0 {
        let _: () = pipe.query_async(&mut conn).await.expect("XADD");
    }

    let mut cfg = IndexConfig::new(REDIS_URL, database_url);
    cfg.stream_key = stream_key.clone();
    cfg.dead_letter_key = format!("test:{key_prefix}:dead");
    cfg.group = "apitest".into();
    cfg.workers = 2;
    cfg.batch_size = 500;
    cfg.block = Duration::from_millis(100);
    cfg.exit_when_drained = true;
    skyhose_index::run(cfg, CancellationToken::new())
        .await
        .expect("index the entries");
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(&stream_key)
        .query_async(&mut conn)
        .await;
}

/// Fixture databases of test processes that no longer run.
pub async fn drop_stale_databases() {
    let Ok((client, conn)) = tokio_postgres::connect(
        "postgres://postgres@127.0.0.1:5432/postgres",
        tokio_postgres::NoTls,
    )
    .await
    else {
        return;
    };
    tokio::spawn(conn);
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'skyhose_apitest_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name
            .trim_start_matches("skyhose_apitest_")
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// A running API over the fixture.
pub struct Server {
    pub addr: SocketAddr,
    pub token: CancellationToken,
}

impl Server {
    pub async fn start(config: impl FnOnce(&mut ApiConfig)) -> Server {
        Server::start_on(&fixture().database_url, config).await
    }

    /// A running API over the database `database_url`.
    pub async fn start_on(database_url: &str, config: impl FnOnce(&mut ApiConfig)) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut api = ApiConfig::new(database_url);
        api.listen = addr;
        api.pool_size = 4;
        config(&mut api);
        let pool = skyhose_api::connect_pool(&api).expect("pool");
        let token = CancellationToken::new();
        let state = AppState::new(pool, api, None);
        tokio::spawn(skyhose_api::serve_on(listener, state, token.clone()));
        Server { addr, token }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET `/xrpc/<nsid>?<query>`: status and JSON body.
    pub async fn get(&self, nsid: &str, query: &str) -> (u16, Value) {
        self.get_with(nsid, query, None).await
    }

    pub async fn get_with(&self, nsid: &str, query: &str, bearer: Option<&str>) -> (u16, Value) {
        let path = if query.is_empty() {
            format!("/xrpc/{nsid}")
        } else {
            format!("/xrpc/{nsid}?{query}")
        };
        let (status, body) = http_get(self.addr, &path, bearer).await;
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "{path}: body is not JSON: {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, json)
    }
}

impl Server {
    /// POST `/xrpc/<nsid>` with a JSON input.
    pub async fn post_with(&self, nsid: &str, input: &Value, bearer: Option<&str>) -> HttpResponse {
        let body = serde_json::to_vec(input).expect("input JSON");
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = auth.as_deref() {
            headers.push(("authorization", auth));
        }
        http_request(
            self.addr,
            "POST",
            &format!("/xrpc/{nsid}"),
            &headers,
            Some(&body),
        )
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A minimal HTTP/1.1 GET over loopback, so tests need no HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, Vec<u8>) {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let res = http_request(addr, "GET", path, &headers, None).await;
    (res.status, res.body)
}

/// An answer of [`http_request`]; header names in lower case.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over loopback with the given headers and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

pub fn lexicon_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lexicons")
}

/// Installs the npm checkers when they are missing (CI runs `npm ci` first).
pub fn ensure_node_modules() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if !js_dir().join("node_modules/@atproto/lexicon").exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(js_dir())
                .status()
                .expect("npm is installed");
            assert!(status.success(), "npm ci failed in {}", js_dir().display());
        }
    });
}

/// Validates `(nsid, label, output)` cases with `@atproto/lexicon`.
pub fn validate_with_official_lexicons(cases: &[(String, String, Value)]) {
    ensure_node_modules();
    let cases: Vec<Value> = cases
        .iter()
        .map(|(nsid, label, output)| serde_json::json!({"nsid": nsid, "label": label, "output": output}))
        .collect();
    let path = std::env::temp_dir().join(format!(
        "skyhose-lexicon-cases-{}-{}.json",
        std::process::id(),
        cases.len()
    ));
    std::fs::write(&path, serde_json::to_vec(&cases).expect("cases json")).expect("write cases");
    let out = Command::new("node")
        .arg(js_dir().join("validate.mjs"))
        .arg(lexicon_dir())
        .arg(&path)
        .output()
        .expect("node is installed");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lexicon validation failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
