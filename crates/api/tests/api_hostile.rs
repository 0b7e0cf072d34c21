//! Every endpoint with hostile parameters: a 400 (or 401 for viewer-only
//! methods) with an XRPC error body that says what is wrong — never a 500,
//! never a hang.

mod common;

use std::time::{Duration, Instant};

use common::Server;

const HOSTILE: &[&str] = &[
    "",
    "limit=100000",
    "limit=-1",
    "limit=abc",
    "cursor=%00%01%02",
    "cursor=not-a-cursor",
    "actor=did:plc:&uri=at://&uris=x&actors=%FF",
    "actor=%27%3B%20DROP%20TABLE%20posts%3B--",
    "actor=Robert%27)%20OR%201%3D1--&q=%27%20OR%20%271%27%3D%271",
    "uri=at%3A%2F%2Fdid%3Aplc%3Ax%2Fapp.bsky.feed.post%2F..%2F..",
    "uris=at%3A%2F%2Fdid%3Aplc%3Ax%2Fapp.bsky.feed.post%2F3k&depth=99999&parentHeight=-5",
    "actor=%FF%FE%FD",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_parameters_get_a_clear_4xx() {
    let server = Server::start(|_| {}).await;
    let overlong = format!("actor={}&q={}", "a".repeat(5000), "b".repeat(5000));
    let mut queries: Vec<String> = HOSTILE.iter().map(|q| q.to_string()).collect();
    queries.push(overlong);
    let mut checked = 0;
    for nsid in skyhose_api::METHODS {
        for query in &queries {
            let started = Instant::now();
            let (status, body) = server.get(nsid, query).await;
            checked += 1;
            assert!(
                status != 500 && status != 503,
                "{nsid}?{query}: {status} {body}"
            );
            if status >= 400 {
                assert!(
                    body["error"].is_string() && body["message"].is_string(),
                    "{nsid}?{query}: error body {body}"
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{nsid}?{query} took {:?}",
                started.elapsed()
            );
        }
    }
    assert!(checked > 50);
    let (status, body) = server.get("no..method", "").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("com.example.unknownMethod", "").await;
    assert_eq!(status, 501, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_size_limit_are_refused_before_routing() {
    let server = Server::start(|config| config.max_request_bytes = 1024).await;
    let (status, body) = server
        .get(
            "app.bsky.actor.getProfile",
            &format!("actor={}", "a".repeat(2000)),
        )
        .await;
    assert_eq!(status, 414, "{body}");
    assert_eq!(body["error"], "InvalidRequest");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("1024-byte limit"),
        "{body}"
    );
    let (status, _) = server
        .get("app.bsky.actor.getProfile", "actor=alice.test")
        .await;
    assert_ne!(status, 414);
}

/// Past `max_connections` a new client waits to be accepted, and is served
/// as soon as a connection closes (here, before the idle ones are old enough
/// to be closed for it: see api_connections.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_until_one_closes() {
    let server = Server::start(|config| config.max_connections = 2).await;
    let idle_a = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let idle_b = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let health = tokio::spawn(common::http_get(server.addr, "/xrpc/_health", None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !health.is_finished(),
        "a third connection was served while two were open"
    );
    drop(idle_a);
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), health)
        .await
        .expect("served once a connection closed")
        .expect("request task");
    assert_eq!(status, 200);
    drop(idle_b);
}

/// A token whose issuer is a did:web on loopback would make a resolver that
/// follows it connect there: the API refuses the issuer before any
/// connection and tells the client only that the token did not verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_issuer_gets_a_generic_401_and_no_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let aud = "did:web:api.skyhose.test";
    let server = Server::start(|c| c.service_did = aud.into()).await;
    let sim = skyhose_sim::SimConfig::default();
    for iss in [
        format!("did:web:127.0.0.1%3A{port}"),
        "did:web:10.0.0.1".to_owned(),
    ] {
        let now = skyhose_sim::plc::unix_now();
        let claims = serde_json::json!({
            "iss": iss, "aud": aud, "lxm": "app.bsky.feed.getTimeline", "exp": now + 60,
        });
        let token = skyhose_sim::plc::sign_jwt(&sim, &iss, &claims);
        let (status, body) = server
            .get_with("app.bsky.feed.getTimeline", "", Some(&token))
            .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "AuthenticationRequired", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert_eq!(
            message, "service-auth token could not be verified",
            "{body}"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}
