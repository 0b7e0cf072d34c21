//! Simulated repo hosts (PDSes) on loopback, each on its own port, serving
//! the repos of the accounts assigned to it at the network's current state:
//! `com.atproto.sync.listRepos`, `getRepo` and `getLatestCommit`; and a
//! relay-like front serving `com.atproto.sync.listHosts`. Faults: a host
//! answering 429 for a while, truncated CARs and commits with bad signatures
//! for some repos.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{json_reply, serve, Handler};
use crate::network::{Network, RepoUnavailable};
use crate::plc;

/// The network the relay generates and the hosts serve, behind one lock.
pub type SharedNetwork = Arc<Mutex<Network>>;

/// Repos per `listRepos` page unless `limit` asks for fewer (the reference PDS's cap).
const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFaults {
    /// The first host answers this many requests with 429 and `ratelimit-*`
    /// headers before serving normally.
    pub rate_limited_requests: u64,
    /// One repo in this many (chosen by DID) is served as a truncated CAR.
    pub truncated_car_every: Option<u64>,
    /// A truncated repo is served whole after this many truncated answers,
    /// as a cut transfer would be; `None`: always truncated.
    pub truncated_car_repeats: Option<u64>,
    /// One repo in this many (chosen by DID, never one of the truncated) is
    /// served with its commit signed by a key that is not the account's.
    pub bad_signature_every: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct HostsConfig {
    /// Address of each host (port 0: any free port).
    pub listen: Vec<SocketAddr>,
    /// Address of the relay-like front serving `listHosts`.
    pub front: SocketAddr,
    pub faults: HostFaults,
}

impl Default for HostsConfig {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        HostsConfig {
            listen: vec![any, any],
            front: any,
            faults: HostFaults::default(),
        }
    }
}

/// Which of `hosts` hosts `did`: stable for a DID, so the PLC directory and
/// the hosts agree without sharing state.
pub fn host_index(did: &str, hosts: usize) -> usize {
    let digest = Sha256::digest(did.as_bytes());
    let n = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    (n % hosts.max(1) as u64) as usize
}

/// The fault, if any, a DID's repo is served with.
fn did_bucket(did: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"fault")
        .chain_update(did.as_bytes())
        .finalize();
    u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ])
}

/// Whether `faults` truncates the CAR of `did`.
pub fn truncated(faults: &HostFaults, did: &str) -> bool {
    faults
        .truncated_car_every
        .is_some_and(|n| n > 0 && did_bucket(did).is_multiple_of(n))
}

/// Whether `faults` serves `did` with a badly signed commit.
pub fn badly_signed(faults: &HostFaults, did: &str) -> bool {
    !truncated(faults, did)
        && faults
            .bad_signature_every
            .is_some_and(|n| n > 0 && did_bucket(did) % n == n / 2)
}

pub struct HostsHandle {
    addrs: Vec<SocketAddr>,
    front: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HostsHandle {
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `http://HOST:PORT` of each host, in host order (what DID documents name).
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    pub fn front_url(&self) -> String {
        format!("http://{}", self.front)
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

struct Host {
    index: usize,
    count: usize,
    network: SharedNetwork,
    faults: HostFaults,
    sim: crate::SimConfig,
    requests: AtomicU64,
    /// Truncated answers given per DID.
    truncations: Mutex<HashMap<String, u64>>,
}

pub async fn start(
    cfg: HostsConfig,
    network: SharedNetwork,
    sim: crate::SimConfig,
) -> std::io::Result<HostsHandle> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    let count = cfg.listen.len();
    for (index, listen) in cfg.listen.iter().enumerate() {
        let listener = TcpListener::bind(listen).await?;
        addrs.push(listener.local_addr()?);
        let host = Arc::new(Host {
            index,
            count,
            network: network.clone(),
            faults: cfg.faults.clone(),
            sim: sim.clone(),
            requests: AtomicU64::new(0),
            truncations: Mutex::new(HashMap::new()),
        });
        let handler: Handler = Arc::new(move |req| host.answer(req));
        tasks.push(tokio::spawn(serve(
            listener,
            handler,
            shutdown_rx.clone(),
            "pds",
        )));
    }
    let front_listener = TcpListener::bind(cfg.front).await?;
    let front = front_listener.local_addr()?;
    let hostnames: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let front_handler: Handler = {
        let network = network.clone();
        Arc::new(move |req| list_hosts(req, &hostnames, &network))
    };
    tasks.push(tokio::spawn(serve(
        front_listener,
        front_handler,
        shutdown_rx,
        "relay-front",
    )));
    Ok(HostsHandle {
        addrs,
        front,
        shutdown_tx,
        tasks,
    })
}

/// `name=value` pairs of a query string, with `%XX` escapes decoded.
fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn xrpc_error(status: StatusCode, error: &str, message: &str) -> Response<Full<Bytes>> {
    json_reply(status, &json!({"error": error, "message": message}))
}

fn lock(network: &SharedNetwork) -> std::sync::MutexGuard<'_, Network> {
    network.lock().unwrap_or_else(|e| e.into_inner())
}

impl Host {
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        if self.index == 0 && n < self.faults.rate_limited_requests {
            let mut resp = xrpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "Rate Limit Exceeded",
            );
            let remaining = self.faults.rate_limited_requests - n;
            let headers = resp.headers_mut();
            headers.insert("ratelimit-limit", HeaderValue::from(3000u64));
            headers.insert("ratelimit-remaining", HeaderValue::from(0u64));
            headers.insert(
                "ratelimit-reset",
                HeaderValue::from(plc::unix_now() + remaining.min(5)),
            );
            headers.insert("ratelimit-policy", HeaderValue::from_static("3000;w=300"));
            headers.insert("retry-after", HeaderValue::from(1u64));
            return resp;
        }
        if req.method() != Method::GET {
            return xrpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "InvalidRequest",
                "only GET is served",
            );
        }
        let params = query(req);
        match req.uri().path() {
            "/xrpc/com.atproto.sync.listRepos" => self.list_repos(&params),
            "/xrpc/com.atproto.sync.getRepo" => self.get_repo(&params),
            "/xrpc/com.atproto.sync.getLatestCommit" => self.latest_commit(&params),
            _ => xrpc_error(
                StatusCode::NOT_IMPLEMENTED,
                "MethodNotImplemented",
                "method not implemented",
            ),
        }
    }

    /// Whether this answer for `did`, a truncated repo, is truncated too.
    fn truncate_again(&self, did: &str) -> bool {
        let Some(repeats) = self.faults.truncated_car_repeats else {
            return true;
        };
        let mut served = self.truncations.lock().unwrap_or_else(|e| e.into_inner());
        let count = served.entry(did.to_owned()).or_insert(0);
        *count += 1;
        *count <= repeats
    }

    fn hosted_did<'p>(
        &self,
        params: &'p [(String, String)],
    ) -> Result<&'p str, Box<Response<Full<Bytes>>>> {
        let Some(did) = param(params, "did") else {
            return Err(Box::new(xrpc_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Error: Params must have the property \"did\"",
            )));
        };
        if host_index(did, self.count) != self.index {
            return Err(Box::new(unavailable(RepoUnavailable::NotFound, did)));
        }
        Ok(did)
    }

    fn list_repos(&self, params: &[(String, String)]) -> Response<Full<Bytes>> {
        let limit = param(params, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(500)
            .clamp(1, MAX_PAGE);
        let Ok(start) = param(params, "cursor").map_or(Ok(0), str::parse::<usize>) else {
            return xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", "bad cursor");
        };
        let (repos, next) = lock(&self.network).list_repos(start, limit, |did| {
            host_index(did, self.count) == self.index
        });
        let repos: Vec<serde_json::Value> = repos
            .into_iter()
            .map(|r| {
                let mut v = json!({
                    "did": r.did,
                    "head": r.head.to_string(),
                    "rev": r.rev,
                    "active": r.active,
                });
                if let Some(status) = r.status {
                    v["status"] = json!(status);
                }
                v
            })
            .collect();
        let mut body = json!({ "repos": repos });
        if let Some(next) = next {
            body["cursor"] = json!(next.to_string());
        }
        json_reply(StatusCode::OK, &body)
    }

    fn get_repo(&self, params: &[(String, String)]) -> Response<Full<Bytes>> {
        let did = match self.hosted_did(params) {
            Ok(did) => did,
            Err(resp) => return *resp,
        };
        let forger = badly_signed(&self.faults, did)
            .then(|| plc::proto_signing_key(&self.sim, "did:plc:forger"));
        let car = lock(&self.network).repo_car(did, forger.as_ref());
        match car {
            Ok(mut car) => {
                if truncated(&self.faults, did) && self.truncate_again(did) {
                    car.truncate(car.len() / 2);
                }
                let mut resp = Response::new(Full::new(Bytes::from(car)));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/vnd.ipld.car"),
                );
                resp
            }
            Err(e) => unavailable(e, did),
        }
    }

    fn latest_commit(&self, params: &[(String, String)]) -> Response<Full<Bytes>> {
        let did = match self.hosted_did(params) {
            Ok(did) => did,
            Err(resp) => return *resp,
        };
        let latest = lock(&self.network).latest_commit(did);
        match latest {
            Ok((cid, rev)) => {
                json_reply(StatusCode::OK, &json!({"cid": cid.to_string(), "rev": rev}))
            }
            Err(e) => unavailable(e, did),
        }
    }
}

fn unavailable(e: RepoUnavailable, did: &str) -> Response<Full<Bytes>> {
    let message = match e {
        RepoUnavailable::NotFound => format!("Could not find repo for DID: {did}"),
        RepoUnavailable::Deactivated => format!("Repo has been deactivated: {did}"),
        RepoUnavailable::Takendown => format!("Repo has been takendown: {did}"),
    };
    xrpc_error(StatusCode::BAD_REQUEST, e.error_name(), &message)
}

/// `com.atproto.sync.listHosts`, all hosts on one page.
fn list_hosts(
    req: &Request<Incoming>,
    hostnames: &[String],
    network: &SharedNetwork,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/xrpc/com.atproto.sync.listHosts" {
        return xrpc_error(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "method not implemented",
        );
    }
    let (seq, counts) = {
        let net = lock(network);
        let mut counts = vec![0u64; hostnames.len()];
        for (did, _) in net.accounts() {
            if let Some(c) = counts.get_mut(host_index(did, hostnames.len())) {
                *c += 1;
            }
        }
        (net.head_seq(), counts)
    };
    let hosts: Vec<serde_json::Value> = hostnames
        .iter()
        .zip(counts)
        .map(|(hostname, count)| {
            json!({"hostname": hostname, "seq": seq, "accountCount": count, "status": "active"})
        })
        .collect();
    json_reply(StatusCode::OK, &json!({ "hosts": hosts }))
}
