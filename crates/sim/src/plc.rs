//! A simulated PLC directory on loopback: `GET /{did}` answers the DID document
//! of a simulated account, so service-auth tokens minted here verify the way a
//! real PDS's would. It is the accounts' handle host too:
//! `GET /.well-known/atproto-did` with a handle as `Host` answers its DID, so
//! a resolver given this URL as its handle resolver verifies handles.
//!
//! Every account's secp256k1 signing key is a pure function of the sim seed and
//! its DID, so the directory, the token minter and any test agree on keys
//! without sharing state. The directory knows the accounts that exist when the
//! network starts; accounts that join later are unknown (404) unless someone
//! `register`s them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use k256::ecdsa::signature::Signer;
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use skyhose_proto::crypto::PublicKey;

use crate::http::{json_reply, serve, Handler};
use crate::network::{Network, SimConfig};

/// Where the simulated accounts' PDS would be when no repo hosts run; nothing listens there.
const PDS_ENDPOINT: &str = "http://127.0.0.1";

#[derive(Debug, Clone)]
pub struct PlcConfig {
    pub listen: SocketAddr,
    pub sim: SimConfig,
    /// Base URLs of the simulated repo hosts; each account's document names
    /// the one `hosts::host_index` assigns it. Empty: a placeholder address.
    pub pds_endpoints: Vec<String>,
}

impl Default for PlcConfig {
    fn default() -> Self {
        PlcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sim: SimConfig::default(),
            pds_endpoints: Vec::new(),
        }
    }
}

/// DID → handle of every account the directory answers for.
struct Directory {
    sim: SimConfig,
    pds_endpoints: Vec<String>,
    handles: RwLock<Names>,
    /// Labelers' DIDs → their subscribeLabels endpoints.
    labelers: RwLock<HashMap<String, String>>,
    /// Documents served as given (recorded ones).
    documents: RwLock<HashMap<String, Value>>,
}

/// Each DID's handle, and who a handle resolves to: the first DID that
/// claimed it, so a later document claiming someone else's handle does not
/// take it over.
#[derive(Default)]
struct Names {
    by_did: HashMap<String, String>,
    owner: HashMap<String, String>,
}

impl Names {
    fn claim(&mut self, did: &str, handle: &str) {
        self.by_did.insert(did.to_owned(), handle.to_owned());
        self.owner
            .entry(handle.to_ascii_lowercase())
            .or_insert_with(|| did.to_owned());
    }
}

impl Directory {
    /// The DID whose handle is `handle`, as its `/.well-known/atproto-did`
    /// would answer.
    fn did_of(&self, handle: &str) -> Option<String> {
        let names = self.handles.read().unwrap_or_else(|e| e.into_inner());
        names.owner.get(&handle.to_ascii_lowercase()).cloned()
    }

    fn document(&self, did: &str) -> Option<Value> {
        let documents = self.documents.read().unwrap_or_else(|e| e.into_inner());
        if let Some(doc) = documents.get(did) {
            return Some(doc.clone());
        }
        drop(documents);
        let names = self.handles.read().unwrap_or_else(|e| e.into_inner());
        let handle = names.by_did.get(did)?;
        let pds = match self.pds_endpoints.len() {
            0 => PDS_ENDPOINT,
            n => self
                .pds_endpoints
                .get(crate::hosts::host_index(did, n))
                .map_or(PDS_ENDPOINT, String::as_str),
        };
        let mut doc = did_document_at(&self.sim, did, handle, pds);
        let labelers = self.labelers.read().unwrap_or_else(|e| e.into_inner());
        if let Some(endpoint) = labelers.get(did) {
            add_labeler(&self.sim, &mut doc, did, endpoint);
        }
        Some(doc)
    }
}

pub struct PlcHandle {
    addr: SocketAddr,
    directory: Arc<Directory>,
    shutdown_tx: watch::Sender<bool>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl PlcHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, the directory URL a resolver is configured with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes the directory answer for `did` too (an account that joined later).
    pub fn register(&self, did: &str, handle: &str) {
        self.directory
            .handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .claim(did, handle);
    }

    /// Makes the directory answer for a labeler: its document names
    /// `endpoint` as the `#atproto_labeler` service and the DID's key as
    /// `#atproto_label`.
    pub fn register_labeler(&self, did: &str, handle: &str, endpoint: &str) {
        self.register(did, handle);
        self.directory
            .labelers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(did.to_owned(), endpoint.to_owned());
    }

    /// Makes the directory answer `did` with `document` as it is (one
    /// recorded elsewhere, for instance).
    pub fn register_document(&self, did: &str, document: Value) {
        self.directory
            .documents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(did.to_owned(), document);
    }

    /// Stops accepting and closes open connections.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        self.acceptor.abort();
        let _ = (&mut self.acceptor).await;
    }
}

/// The accounts that exist when the network for `sim` starts: DID and handle.
pub fn initial_accounts(sim: &SimConfig) -> Vec<(String, String)> {
    Network::new(sim.clone())
        .accounts()
        .map(|(did, handle)| (did.to_owned(), handle.to_owned()))
        .collect()
}

pub async fn start(cfg: PlcConfig) -> std::io::Result<PlcHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let sim = cfg.sim.clone();
    let accounts = tokio::task::spawn_blocking(move || initial_accounts(&sim))
        .await
        .map_err(std::io::Error::other)?;
    let directory = Arc::new(Directory {
        sim: cfg.sim,
        pds_endpoints: cfg.pds_endpoints,
        handles: RwLock::new({
            let mut names = Names::default();
            for (did, handle) in &accounts {
                names.claim(did, handle);
            }
            names
        }),
        labelers: RwLock::new(HashMap::new()),
        documents: RwLock::new(HashMap::new()),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let handler: Handler = {
        let directory = directory.clone();
        Arc::new(move |req| answer(&directory, req))
    };
    let acceptor = tokio::spawn(serve(listener, handler, shutdown_rx, "plc"));
    Ok(PlcHandle {
        addr,
        directory,
        shutdown_tx,
        acceptor,
    })
}

fn answer(directory: &Directory, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"message": "only GET is served"}),
        );
    }
    let path = req.uri().path().trim_start_matches('/');
    if path == ".well-known/atproto-did" {
        // Also the accounts' handle host: asked with the handle as Host, as
        // a PDS answers for the handles it hosts.
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let handle = host.rsplit_once(':').map_or(host, |(name, _)| name);
        return match directory.did_of(handle) {
            Some(did) => {
                let mut resp = Response::new(Full::new(Bytes::from(did)));
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain"),
                );
                resp
            }
            None => json_reply(
                StatusCode::NOT_FOUND,
                &json!({"message": format!("no account has the handle {handle}")}),
            ),
        };
    }
    let did = path.replace("%3A", ":").replace("%3a", ":");
    match directory.document(&did) {
        Some(doc) => json_reply(StatusCode::OK, &doc),
        None => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"message": format!("DID not registered: {did}")}),
        ),
    }
}

/// The account's signing key: sha256(seed || did) as the secret scalar, hashed
/// again in the (astronomically unlikely) case it is not a valid scalar.
pub fn signing_key(sim: &SimConfig, did: &str) -> SigningKey {
    let mut digest: [u8; 32] = Sha256::new()
        .chain_update(sim.seed.to_be_bytes())
        .chain_update(did.as_bytes())
        .finalize()
        .into();
    loop {
        if let Ok(key) = SigningKey::from_slice(&digest) {
            return key;
        }
        digest = Sha256::digest(digest).into();
    }
}

/// The account's signing key as the repository code takes it.
pub fn proto_signing_key(sim: &SimConfig, did: &str) -> skyhose_proto::crypto::SigningKey {
    skyhose_proto::crypto::SigningKey::K256(signing_key(sim, did))
}

/// `z` + base58btc(multicodec `secp256k1-pub` + compressed point), as in a
/// DID document's `publicKeyMultibase`.
pub fn public_key_multibase(key: &VerifyingKey) -> String {
    PublicKey::K256(*key).to_multikey()
}

/// The DID document the directory serves for a simulated account when no
/// repo hosts run.
pub fn did_document(sim: &SimConfig, did: &str, handle: &str) -> Value {
    did_document_at(sim, did, handle, PDS_ENDPOINT)
}

/// The DID document of an account hosted at `pds`.
pub fn did_document_at(sim: &SimConfig, did: &str, handle: &str, pds: &str) -> Value {
    let key = signing_key(sim, did);
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did,
        "alsoKnownAs": [format!("at://{handle}")],
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": public_key_multibase(key.verifying_key()),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": pds,
        }],
    })
}

/// Adds the labeler's key and endpoint to its DID document.
fn add_labeler(sim: &SimConfig, doc: &mut Value, did: &str, endpoint: &str) {
    let key = signing_key(sim, did);
    if let Some(methods) = doc
        .get_mut("verificationMethod")
        .and_then(Value::as_array_mut)
    {
        methods.push(json!({
            "id": format!("{did}#atproto_label"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": public_key_multibase(key.verifying_key()),
        }));
    }
    if let Some(services) = doc.get_mut("service").and_then(Value::as_array_mut) {
        services.push(json!({
            "id": "#atproto_labeler",
            "type": "AtprotoLabeler",
            "serviceEndpoint": endpoint,
        }));
    }
}

/// A service-auth JWT (ES256K) from account `did` for service `aud` and method
/// `lxm`, valid for `ttl_secs` from now, signed with the account's key.
pub fn mint_service_auth(
    sim: &SimConfig,
    did: &str,
    aud: &str,
    lxm: &str,
    ttl_secs: u64,
) -> String {
    let now = unix_now();
    let claims = json!({
        "iss": did,
        "aud": aud,
        "lxm": lxm,
        "iat": now,
        "exp": now.saturating_add(ttl_secs),
        "jti": nonce(did, now),
    });
    sign_jwt(sim, did, &claims)
}

/// A compact ES256K JWT with any `claims`, signed with `did`'s key: for tests
/// that need tokens a PDS would not issue (expired, no `lxm`, ...).
pub fn sign_jwt(sim: &SimConfig, did: &str, claims: &Value) -> String {
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ES256K"}"#);
    let payload = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let signature: Signature = signing_key(sim, did).sign(signed.as_bytes());
    // atproto accepts only low-S signatures.
    let signature = signature.normalize_s().unwrap_or(signature);
    format!("{signed}.{}", BASE64URL_NOPAD.encode(&signature.to_bytes()))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token id unique within the process, so two tokens minted in the same
/// second differ.
fn nonce(did: &str, now: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digest = Sha256::new()
        .chain_update(did.as_bytes())
        .chain_update(now.to_be_bytes())
        .chain_update(n.to_be_bytes())
        .finalize();
    HEXLOWER.encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_per_seed_and_did() {
        let sim = SimConfig::default();
        let a = signing_key(&sim, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
        let b = signing_key(&sim, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
        let c = signing_key(&sim, "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb");
        let other_seed = SimConfig {
            seed: 2,
            ..sim.clone()
        };
        let d = signing_key(&other_seed, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_ne!(a.to_bytes(), c.to_bytes());
        assert_ne!(a.to_bytes(), d.to_bytes());
    }

    #[test]
    fn multibase_is_a_compressed_secp256k1_multikey() {
        let key = signing_key(&SimConfig::default(), "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
        let mb = public_key_multibase(key.verifying_key());
        // Every compressed secp256k1 Multikey starts this way.
        assert!(mb.starts_with("zQ3s"), "{mb}");
        let raw = bs58::decode(&mb[1..]).into_vec().unwrap();
        assert_eq!(&raw[..2], &skyhose_proto::crypto::SECP256K1_PUB);
        assert_eq!(raw.len(), 35);
    }

    #[test]
    fn tokens_have_three_parts_and_the_claims() {
        let sim = SimConfig::default();
        let token = mint_service_auth(&sim, "did:plc:x", "did:web:api", "app.bsky.x", 60);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
        assert_eq!(claims["iss"], "did:plc:x");
        assert_eq!(claims["aud"], "did:web:api");
        assert_eq!(claims["lxm"], "app.bsky.x");
        assert_eq!(
            BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap().len(),
            64
        );
    }

    #[tokio::test]
    async fn serves_documents_of_initial_accounts_and_404_otherwise() {
        let sim = SimConfig {
            accounts: 5,
            ..SimConfig::default()
        };
        let plc = start(PlcConfig {
            sim: sim.clone(),
            ..PlcConfig::default()
        })
        .await
        .unwrap();
        let (did, handle) = initial_accounts(&sim).remove(0);
        let (status, body) = get(plc.addr(), &format!("/{did}")).await;
        assert_eq!(status, 200, "{body}");
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc, did_document(&sim, &did, &handle));
        let (status, _) = get(plc.addr(), "/did:plc:unknownunknownunknownunk").await;
        assert_eq!(status, 404);
        plc.register("did:plc:unknownunknownunknownunk", "late.sim.test");
        let (status, _) = get(plc.addr(), "/did:plc:unknownunknownunknownunk").await;
        assert_eq!(status, 200);
        plc.shutdown().await;
    }

    /// A minimal HTTP/1.0 GET, so the test needs no client library.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}
