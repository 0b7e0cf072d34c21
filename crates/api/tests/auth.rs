//! Service-auth verification against the simulated PLC directory, and against
//! a did:web host on loopback whose document the test changes (key rotation,
//! P-256 keys, a host that never answers).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};
use skyhose_api::{AuthOptions, ServiceAuth};
use skyhose_identity::IdentityConfig;
use skyhose_sim::plc::{self, PlcConfig};
use skyhose_sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const AUD: &str = "did:web:api.skyhose.test";
const LXM: &str = "app.bsky.feed.getTimeline";

fn sim() -> SimConfig {
    SimConfig {
        seed: 7,
        accounts: 20,
        ..SimConfig::default()
    }
}

async fn expect_err(auth: &ServiceAuth, token: &str, lxm: &str, want: &str) {
    let err = auth
        .verify(&format!("Bearer {token}"), lxm)
        .await
        .expect_err(want);
    let msg = err.to_string();
    assert!(msg.contains(want), "{msg:?} should mention {want:?}");
}

#[tokio::test]
async fn sim_plc_tokens_verify_and_bad_ones_fail_clearly() {
    let sim = sim();
    let plc = plc::start(PlcConfig {
        sim: sim.clone(),
        ..PlcConfig::default()
    })
    .await
    .unwrap();
    let accounts = plc::initial_accounts(&sim);
    let (did, _) = &accounts[0];
    let (other, _) = &accounts[1];
    let auth = ServiceAuth::new(AUD.into(), IdentityConfig::loopback(plc.url()));

    let token = plc::mint_service_auth(&sim, did, AUD, LXM, 60);
    let viewer = auth.verify(&format!("Bearer {token}"), LXM).await.unwrap();
    assert_eq!(&viewer, did);
    // Same token again (from the cache), and a second account.
    assert_eq!(
        &auth.verify(&format!("Bearer {token}"), LXM).await.unwrap(),
        did
    );
    let token2 = plc::mint_service_auth(&sim, other, &format!("{AUD}#bsky_appview"), LXM, 60);
    assert_eq!(
        &auth.verify(&format!("bearer {token2}"), LXM).await.unwrap(),
        other
    );
    // The issuer may name one of its services.
    let now = plc::unix_now();
    let with_fragment = plc::sign_jwt(
        &sim,
        did,
        &json!({"iss": format!("{did}#atproto_labeler"), "aud": AUD, "lxm": LXM, "exp": now + 60}),
    );
    assert_eq!(
        &auth
            .verify(&format!("Bearer {with_fragment}"), LXM)
            .await
            .unwrap(),
        did
    );

    let wrong_aud = plc::mint_service_auth(&sim, did, "did:web:elsewhere.test", LXM, 60);
    expect_err(&auth, &wrong_aud, LXM, "not this service").await;

    let expired = plc::sign_jwt(
        &sim,
        did,
        &json!({"iss": did, "aud": AUD, "lxm": LXM, "iat": now - 7200, "exp": now - 3600}),
    );
    expect_err(&auth, &expired, LXM, "expired").await;

    // A token is good for its method only, even one that verified before.
    expect_err(
        &auth,
        &token,
        "app.bsky.actor.getProfile",
        "not app.bsky.actor.getProfile",
    )
    .await;

    let no_lxm = plc::sign_jwt(&sim, did, &json!({"iss": did, "aud": AUD, "exp": now + 60}));
    expect_err(&auth, &no_lxm, LXM, "no lxm claim").await;

    // One byte of the signature changed.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut sig = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
    sig[5] ^= 1;
    let tampered = format!("{signed}.{}", BASE64URL_NOPAD.encode(&sig));
    expect_err(&auth, &tampered, LXM, "signature does not verify").await;

    // Claims changed under a valid signature: the other account's key signed it.
    let forged = plc::sign_jwt(
        &sim,
        other,
        &json!({"iss": did, "aud": AUD, "lxm": LXM, "exp": now + 60}),
    );
    expect_err(&auth, &forged, LXM, "signature does not verify").await;

    let unknown = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    let token = plc::mint_service_auth(&sim, unknown, AUD, LXM, 60);
    expect_err(&auth, &token, LXM, "could not resolve the signing key").await;
    expect_err(&auth, &token, LXM, "DID not found").await;

    expect_err(&auth, "not-a-jwt", LXM, "malformed").await;
    let err = auth.verify("Basic dXNlcjpwYXNz", LXM).await.unwrap_err();
    assert!(err.to_string().contains("Bearer"), "{err}");

    plc.shutdown().await;
}

/// A did:web host on loopback serving `doc`, counting the fetches.
struct WebHost {
    addr: SocketAddr,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl WebHost {
    async fn start() -> WebHost {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let doc = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (d, f) = (d.clone(), f.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let wanted = request.starts_with(b"GET /.well-known/did.json ");
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = d.lock().unwrap().to_string();
                    let status = if wanted { "200 OK" } else { "404 Not Found" };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        WebHost { addr, doc, fetches }
    }

    fn did(&self) -> String {
        format!("did:web:127.0.0.1%3A{}", self.addr.port())
    }

    fn serve_key(&self, multibase: &str) {
        let did = self.did();
        *self.doc.lock().unwrap() = json!({
            "id": did,
            "verificationMethod": [{
                "id": format!("{did}#atproto"),
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": multibase,
            }],
        });
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn k256_multibase(key: &k256::ecdsa::SigningKey) -> String {
    plc::public_key_multibase(key.verifying_key())
}

fn p256_multibase(key: &p256::ecdsa::SigningKey) -> String {
    skyhose_proto::crypto::PublicKey::P256(*key.verifying_key()).to_multikey()
}

/// Fresh claims each call (a new `jti`), so no two tokens are the same and a
/// verified token's cache entry never answers for another.
fn claims(iss: &str) -> Value {
    static JTI: AtomicUsize = AtomicUsize::new(0);
    let jti = JTI.fetch_add(1, Ordering::Relaxed);
    json!({"iss": iss, "aud": AUD, "lxm": LXM, "exp": plc::unix_now() + 60, "jti": jti.to_string()})
}

fn jwt(alg: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = BASE64URL_NOPAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
    let payload = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    format!(
        "{signed}.{}",
        BASE64URL_NOPAD.encode(&sign(signed.as_bytes()))
    )
}

fn es256k(key: &k256::ecdsa::SigningKey, claims: &Value) -> String {
    jwt("ES256K", claims, |m| {
        let sig: k256::ecdsa::Signature = key.sign(m);
        sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
    })
}

fn es256(key: &p256::ecdsa::SigningKey, alg: &str, claims: &Value) -> String {
    jwt(alg, claims, |m| {
        let sig: p256::ecdsa::Signature = key.sign(m);
        sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
    })
}

#[tokio::test]
async fn did_web_keys_are_cached_and_rotation_is_picked_up() {
    let host = WebHost::start().await;
    let did = host.did();
    let old = k256::ecdsa::SigningKey::from_slice(&[0x31; 32]).unwrap();
    let new = k256::ecdsa::SigningKey::from_slice(&[0x32; 32]).unwrap();
    host.serve_key(&k256_multibase(&old));

    let eager = ServiceAuth::with_options(
        AUD.into(),
        IdentityConfig::loopback("http://127.0.0.1:9"),
        AuthOptions {
            refresh_after: Duration::ZERO,
            ..AuthOptions::default()
        },
    );
    let bearer = |t: String| format!("Bearer {t}");
    assert_eq!(
        eager
            .verify(&bearer(es256k(&old, &claims(&did))), LXM)
            .await
            .unwrap(),
        did
    );
    assert_eq!(
        eager
            .verify(&bearer(es256k(&old, &claims(&did))), LXM)
            .await
            .unwrap(),
        did
    );
    assert_eq!(host.fetches(), 1, "the key is cached");

    host.serve_key(&k256_multibase(&new));
    assert_eq!(
        eager
            .verify(&bearer(es256k(&new, &claims(&did))), LXM)
            .await
            .unwrap(),
        did
    );
    assert_eq!(
        host.fetches(),
        2,
        "one re-resolution after the signature failed"
    );
    let err = eager
        .verify(&bearer(es256k(&old, &claims(&did))), LXM)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );

    // With the default options a key just fetched is not fetched again on a
    // bad signature, so forged tokens cannot drive traffic to the host.
    let guarded = ServiceAuth::new(AUD.into(), IdentityConfig::loopback("http://127.0.0.1:9"));
    assert!(guarded
        .verify(&bearer(es256k(&new, &claims(&did))), LXM)
        .await
        .is_ok());
    let before = host.fetches();
    for _ in 0..5 {
        assert!(guarded
            .verify(&bearer(es256k(&old, &claims(&did))), LXM)
            .await
            .is_err());
    }
    assert_eq!(host.fetches(), before);

    // ES256 with a P-256 key; the header's algorithm must match the key.
    let p = p256::ecdsa::SigningKey::from_slice(&[0x41; 32]).unwrap();
    host.serve_key(&p256_multibase(&p));
    let p256_auth = ServiceAuth::new(AUD.into(), IdentityConfig::loopback("http://127.0.0.1:9"));
    assert_eq!(
        p256_auth
            .verify(&bearer(es256(&p, "ES256", &claims(&did))), LXM)
            .await
            .unwrap(),
        did
    );
    let err = p256_auth
        .verify(&bearer(es256(&p, "ES256K", &claims(&did))), LXM)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is ES256K but the signing key"),
        "{err}"
    );

    // A document that is not the DID's own is refused.
    *host.doc.lock().unwrap() = json!({"id": "did:web:someone.else", "verificationMethod": []});
    let fresh = ServiceAuth::new(AUD.into(), IdentityConfig::loopback("http://127.0.0.1:9"));
    let err = fresh
        .verify(&bearer(es256(&p, "ES256", &claims(&did))), LXM)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the DID asked for"), "{err}");
}

#[tokio::test]
async fn a_silent_or_absent_directory_fails_within_the_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let sim = sim();
    let (did, _) = plc::initial_accounts(&sim).remove(0);
    let token = plc::mint_service_auth(&sim, &did, AUD, LXM, 60);
    let auth = ServiceAuth::with_options(
        AUD.into(),
        IdentityConfig {
            timeout: Duration::from_millis(300),
            ..IdentityConfig::loopback(format!("http://{addr}"))
        },
        AuthOptions::default(),
    );
    let started = std::time::Instant::now();
    expect_err(&auth, &token, LXM, "no answer within").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();

    // Nothing listening at all.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let auth = ServiceAuth::new(
        AUD.into(),
        IdentityConfig::loopback(format!("http://{closed}")),
    );
    expect_err(&auth, &token, LXM, "request failed").await;
}

/// A TCP listener that counts the connections it accepts.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn issuers_on_loopback_or_private_addresses_are_never_contacted() {
    let (addr, accepted) = counting_listener().await;
    let key = k256::ecdsa::SigningKey::from_slice(&[0x51; 32]).unwrap();
    let public = ServiceAuth::new(AUD.into(), IdentityConfig::new("https://plc.directory"));
    let tests_only = ServiceAuth::new(AUD.into(), IdentityConfig::loopback("http://127.0.0.1:9"));
    let port = addr.port();
    let loopback = [
        format!("did:web:127.0.0.1%3A{port}"),
        format!("did:web:localhost%3A{port}"),
        "did:web:127.0.0.1".to_owned(),
        "did:web:localhost".to_owned(),
        "did:web:2130706433".to_owned(),
    ];
    let private = [
        "did:web:10.0.0.1".to_owned(),
        "did:web:192.168.1.1".to_owned(),
        "did:web:169.254.169.254".to_owned(),
        "did:web:100.64.0.1".to_owned(),
        "did:web:metadata.google.internal".to_owned(),
        "did:web:printer.local".to_owned(),
        "did:web:example.com%3A8443".to_owned(),
    ];
    for iss in loopback.iter().chain(&private) {
        let token = format!("Bearer {}", es256k(&key, &claims(iss)));
        let err = public.verify(&token, LXM).await.unwrap_err();
        assert_eq!(err.reason(), "issuer_refused", "{iss}: {err}");
        let told = err.public_message();
        assert_eq!(told, "service-auth token could not be verified", "{iss}");
    }
    // The test-only flag opens loopback, never private ranges.
    for iss in &private {
        let token = format!("Bearer {}", es256k(&key, &claims(iss)));
        let err = tests_only.verify(&token, LXM).await.unwrap_err();
        assert_eq!(err.reason(), "issuer_refused", "{iss}: {err}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");
}

#[tokio::test]
async fn a_burst_of_tokens_from_one_issuer_makes_one_fetch_and_failures_are_cached() {
    let host = WebHost::start().await;
    let did = host.did();
    let key = k256::ecdsa::SigningKey::from_slice(&[0x61; 32]).unwrap();
    host.serve_key(&k256_multibase(&key));
    let auth = Arc::new(ServiceAuth::new(
        AUD.into(),
        IdentityConfig::loopback("http://127.0.0.1:9"),
    ));
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let (auth, token) = (
                auth.clone(),
                format!("Bearer {}", es256k(&key, &claims(&did))),
            );
            tokio::spawn(async move { auth.verify(&token, LXM).await })
        })
        .collect();
    for task in burst {
        assert_eq!(task.await.unwrap().unwrap(), did);
    }
    assert_eq!(host.fetches(), 1, "one fetch for the whole burst");

    // A failed resolution is remembered: no fetch per token.
    *host.doc.lock().unwrap() = json!({"id": "did:web:someone.else"});
    let other = ServiceAuth::new(AUD.into(), IdentityConfig::loopback("http://127.0.0.1:9"));
    for _ in 0..5 {
        let token = format!("Bearer {}", es256k(&key, &claims(&did)));
        assert!(other.verify(&token, LXM).await.is_err());
    }
    assert_eq!(host.fetches(), 2, "the failure is cached");
}

#[tokio::test]
async fn the_service_did_document_is_served_and_resolves() {
    let signing = skyhose_proto::crypto::SigningKey::from_bytes(
        skyhose_proto::crypto::Curve::K256,
        &[0x33; 32],
    )
    .unwrap();
    let mut did = String::new();
    let server = common::Server::start(|api| {
        did = format!("did:web:127.0.0.1%3A{}", api.listen.port());
        api.service_did = did.clone();
        api.service_identity = Some(skyhose_api::ServiceIdentity {
            did: did.clone(),
            key: signing.public_key(),
            endpoint: format!("http://{}", api.listen),
        });
    })
    .await;
    // The same resolver a PDS-facing service uses; loopback allowed for the test.
    let resolver = skyhose_identity::Resolver::new(IdentityConfig::loopback("http://127.0.0.1:1"));
    let resolved = resolver.resolve_did(&did).await.expect("document resolves");
    let doc = &resolved.document;
    assert_eq!(doc.signing_key.as_ref(), Some(&signing.public_key()));
    let appview = doc.services.get("bsky_appview").expect("#bsky_appview");
    assert_eq!(appview.kind, "BskyAppView");
    assert_eq!(appview.endpoint, server.url());
    assert_eq!(
        doc.services.get("bsky_notif").map(|s| s.kind.as_str()),
        Some("BskyNotificationService")
    );

    // Without a key nothing is published.
    let bare = common::Server::start(|_| {}).await;
    let (status, body) = common::http_get(bare.addr, "/.well-known/did.json", None).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}
