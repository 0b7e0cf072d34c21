//! The server's connection and request limits: idle clients cannot lock out
//! new ones, slow or greedy ones are cut off, and a panicking handler is a
//! 500 the server lives through. These need no indexed data: the API runs
//! over the `postgres` database with test routes added to its own.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use skyhose_api::{ApiConfig, AppState, Limits};
use skyhose_index::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| skyhose_api::install_metrics_recorder().expect("recorder"))
        .clone()
}

struct TestServer {
    addr: SocketAddr,
    token: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The API with `/test/panic`, `/test/slow` (2 s) and `/test/ok` added.
async fn start(config: impl FnOnce(&mut ApiConfig)) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut api = ApiConfig::new(DATABASE_URL);
    api.listen = addr;
    api.pool_size = 2;
    config(&mut api);
    let limits = Limits::from_config(&api);
    let pool = skyhose_api::connect_pool(&api).expect("pool");
    let state = AppState::new(pool, api, Some(metrics()));
    let routes = skyhose_api::api_routes()
        .route(
            "/test/panic",
            get(|| async {
                if true {
                    panic!("forced by the test");
                }
                "unreachable"
            }),
        )
        .route(
            "/test/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow"
            }),
        )
        .route("/test/ok", get(|| async { "ok" }));
    let app = skyhose_api::with_layers(routes, state);
    let token = CancellationToken::new();
    tokio::spawn(skyhose_api::serve_router(
        listener,
        app,
        limits,
        token.clone(),
    ));
    TestServer { addr, token }
}

/// A connection from `ip` (any of 127.0.0.0/8) that sends nothing.
async fn idle_connection(ip: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    socket.connect(server).await
}

/// Whether the server closed `stream` within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

fn raise_open_file_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed by pointer only.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "this test needs {wanted} open files; the hard limit is {}",
        limit.rlim_max
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    let server = start(|_| {}).await;
    for _ in 0..3 {
        let (status, body) = common::http_get(server.addr, "/test/panic", None).await;
        assert_eq!(status, 500);
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(
            body,
            serde_json::json!({"error": "InternalServerError", "message": "Internal Server Error"})
        );
    }
    let (status, body) = common::http_get(server.addr, "/test/ok", None).await;
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    let rendered = metrics().render();
    assert!(
        rendered.contains("skyhose_api_panics_total 3"),
        "panics not counted:\n{rendered}"
    );
    // Counters are exported from the start, before anything counts.
    for name in [
        "skyhose_api_db_errors_total",
        "skyhose_api_query_timeouts_total",
        "skyhose_api_requests_limited_total",
        "skyhose_api_connections_closed_total{reason=\"per_address_limit\"}",
    ] {
        assert!(rendered.contains(name), "{name} missing:\n{rendered}");
    }
}

/// 5,000 idle connections from twenty addresses, more than the 4,096 slots:
/// once they have been idle a second they are closed to make room, and a
/// new client is answered within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_connections_do_not_lock_out_a_new_client() {
    raise_open_file_limit(16_000);
    // Well under the 5,000 asked for, so the slots are surely all taken
    // (the kernel's backlog holds about 1,000 more; the rest time out).
    let server = start(|config| config.max_connections = 3_000).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5_000u32 {
        let ip = Ipv4Addr::new(127, 0, 0, 2 + (i % 20) as u8);
        let addr = server.addr;
        tasks.spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), idle_connection(ip, addr)).await
        });
    }
    let mut idle = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(Ok(Ok(stream))) = result {
            idle.push(stream);
        }
    }
    assert!(
        idle.len() >= 3_500,
        "only {} idle connections opened",
        idle.len()
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(5),
        common::http_get(server.addr, "/test/ok", None),
    )
    .await
    .expect("the new client was served");
    let waited = started.elapsed();
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    assert!(waited < Duration::from_secs(1), "served after {waited:?}");
    // Which of them the server closed depends on which it had accepted (the
    // rest waited in the kernel's backlog): every one is asked, at once.
    let mut checks = tokio::task::JoinSet::new();
    for mut stream in idle {
        checks.spawn(async move { closed_within(&mut stream, Duration::from_millis(500)).await });
    }
    let mut closed = 0;
    while let Some(result) = checks.join_next().await {
        if matches!(result, Ok(true)) {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was closed under pressure");
}

/// Far from the limit, an idle keep-alive connection stays open past the
/// pressure threshold, and is closed at the header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_at_the_header_read_timeout() {
    let server = start(|config| config.header_read_timeout = Duration::from_millis(1_500)).await;
    let mut stream = idle_connection(Ipv4Addr::LOCALHOST, server.addr)
        .await
        .expect("connect");
    assert!(!closed_within(&mut stream, Duration::from_millis(1_200)).await);
    assert!(closed_within(&mut stream, Duration::from_secs(2)).await);
    // A slow client sending its head a byte at a time is cut off the same way.
    let mut slow = idle_connection(Ipv4Addr::LOCALHOST, server.addr)
        .await
        .expect("connect");
    let started = Instant::now();
    for byte in b"GET /test/ok HTTP/1.1\r\nX-Slow: " {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        if closed_within(&mut slow, Duration::from_millis(100)).await {
            break;
        }
    }
    let closed = closed_within(&mut slow, Duration::from_secs(3)).await;
    assert!(
        closed && started.elapsed() < Duration::from_secs(4),
        "slow client kept its connection for {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection_or_request() {
    let server = start(|config| {
        config.max_connections_per_address = 2;
        config.max_requests_per_address = 1;
    })
    .await;
    let ip = Ipv4Addr::new(127, 0, 0, 9);
    let _a = idle_connection(ip, server.addr).await.expect("connect");
    let _b = idle_connection(ip, server.addr).await.expect("connect");
    let mut third = idle_connection(ip, server.addr).await.expect("connect");
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    // Another address is not affected.
    let (status, _) = common::http_get(server.addr, "/test/ok", None).await;
    assert_eq!(status, 200);

    let slow = tokio::spawn(common::http_get(server.addr, "/test/slow", None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = common::http_get(server.addr, "/test/ok", None).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["error"], "RateLimitExceeded");
    assert_eq!(slow.await.expect("slow request").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_running_past_the_timeout_is_a_503() {
    let server = start(|config| config.request_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, _) = common::http_get(server.addr, "/test/slow", None).await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(1));
}
