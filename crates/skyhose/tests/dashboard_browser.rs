//! The dashboard in a real browser: `skyhose demo` runs, headless Chromium
//! loads `/`, the page's scripts poll the process's metrics, and the numbers
//! the rendered page shows are checked against the metrics read before and
//! after: a non-zero ingest rate that the per-type rates add up to, per-type
//! totals between the two readings, row counts of every table the simulator
//! writes, and a chart drawn inside its frame. A screenshot is kept under
//! target/.
//!
//! Needs Debian's `chromium` (installed by `.ci/run`).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::process::{Child, Command};

const REDIS: &str = "redis://127.0.0.1:6379";

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("Chromium is installed (apt-get install chromium; .ci/run does it)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn spawn_demo(name: &str, port: u16) -> Child {
    let prefix = format!("test:{name}");
    Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .arg("demo")
        .args(["--redis", REDIS])
        .args([
            "--database-url",
            &format!("postgres://postgres@127.0.0.1:5432/{name}"),
        ])
        .args(["--stream-key", &format!("{prefix}:events")])
        .args(["--cursor-key", &format!("{prefix}:cursor")])
        .args(["--status-key", &format!("{prefix}:status")])
        .args(["--dead-letter-key", &format!("{prefix}:dead")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--sim-rate", "1500", "--sim-accounts", "300"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("skyhose binary starts")
}

/// The whole response to a GET, headers included; empty when the server is
/// not there.
async fn get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

async fn healthy(port: u16) -> bool {
    get(port, "/xrpc/_health").await.starts_with("HTTP/1.1 200")
}

/// `skyhose_ingest_events_total` by its `type` label.
async fn ingest_totals(port: u16) -> std::collections::BTreeMap<String, f64> {
    let text = get(port, "/metrics").await;
    let mut totals = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("skyhose_ingest_events_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Some(kind) = labels
            .split(',')
            .find_map(|l| l.strip_prefix("type=\""))
            .and_then(|v| v.strip_suffix('"'))
        else {
            continue;
        };
        *totals.entry(kind.to_owned()).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    totals
}

/// Every `id="<prefix>NAME"` in the DOM, with the number shown in it.
fn numbers_with_prefix(dom: &str, prefix: &str) -> Vec<(String, f64)> {
    let marker = format!("id=\"{prefix}");
    dom.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &dom[at + marker.len()..];
            let name = &rest[..rest.find('"')?];
            Some((name.to_owned(), number_in(dom, &format!("{prefix}{name}"))?))
        })
        .collect()
}

/// The y coordinates of a polyline's points.
fn polyline_ys(dom: &str, id: &str) -> Vec<f64> {
    let Some(at) = dom.find(&format!("id=\"{id}\"")) else {
        return Vec::new();
    };
    let rest = &dom[at..];
    let Some(start) = rest.find("points=\"") else {
        return Vec::new();
    };
    let points = &rest[start + 8..];
    let points = &points[..points.find('"').unwrap_or(0)];
    points
        .split_whitespace()
        .filter_map(|p| p.split_once(',')?.1.parse().ok())
        .collect()
}

/// Runs headless Chromium with the flags that keep it off the network.
async fn chromium_run(args: &[String]) -> std::process::Output {
    let profile = tempdir("chromium-profile");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        // Timers jump ahead while no request is in flight, so the page
        // polls several times before the DOM is dumped.
        "--virtual-time-budget=12000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("Chromium finishes within 90 s")
        .expect("Chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "skyhose-{what}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn number_in(dom: &str, id: &str) -> Option<f64> {
    let start = dom.find(&format!("id=\"{id}\">"))? + id.len() + 6;
    let rest = &dom[start..];
    let text = &rest[..rest.find('<')?];
    text.replace(',', "").trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_rates_in_chromium() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("skyhose_test_dash_{}_{nanos}", std::process::id());
    let port = free_port();
    let mut demo = spawn_demo(&name, port);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !healthy(port).await {
        assert!(Instant::now() < deadline, "the demo's API never came up");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Ingest publishes its rate every few seconds.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let url = format!("http://127.0.0.1:{port}/");

    let before = ingest_totals(port).await;
    let out = chromium_run(&["--dump-dom".into(), url.clone()]).await;
    let after = ingest_totals(port).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<title>skyhose</title>"),
        "page did not load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains(">live<"),
        "the page never reached the API: {dom}"
    );
    let ingest = number_in(&dom, "ingest-rate");
    assert!(
        ingest.is_some_and(|r| r > 0.0),
        "ingest rate shown: {ingest:?}"
    );
    assert!(number_in(&dom, "watermark").is_some_and(|w| w > 0.0));

    // Per-type rates add up to the ingest rate (each is rounded on its own).
    let rates = numbers_with_prefix(&dom, "type-rate-");
    assert!(rates.len() >= 3, "per-type rates shown: {rates:?}");
    let sum: f64 = rates.iter().map(|(_, r)| r).sum();
    let ingest = ingest.unwrap_or_default();
    assert!(
        (sum - ingest).abs() <= rates.len() as f64,
        "per-type rates {rates:?} add up to {sum}, the page says {ingest}"
    );
    assert!(
        rates.iter().any(|(_, r)| *r > 0.0),
        "no type has a rate: {rates:?}"
    );
    // Per-type totals are the metrics' counters, read between the two readings.
    for (kind, total) in numbers_with_prefix(&dom, "type-total-") {
        let low = before.get(&kind).copied().unwrap_or(0.0);
        let high = after.get(&kind).copied().unwrap_or(f64::MAX);
        assert!(
            (low..=high).contains(&total),
            "{kind}: the page shows {total}, the metrics said {low} then {high}"
        );
    }
    // Every table the simulator writes has rows, and the page says they
    // are estimates.
    assert!(dom.contains("rows (estimated)"), "row counts not labelled");
    for table in [
        "actors",
        "posts",
        "likes",
        "follows",
        "blocks",
        "lists",
        "list_items",
    ] {
        let n = number_in(&dom, &format!("count-{table}"));
        assert!(n.is_some_and(|n| n > 0.0), "{table} rows shown: {n:?}");
    }
    // The chart is drawn inside its frame (y from 10 at the top to 150 at
    // the bottom) and is not a line along the top edge.
    let ys = polyline_ys(&dom, "line-ingest");
    assert!(!ys.is_empty(), "no chart points");
    assert!(
        ys.iter().all(|y| (10.0..=150.0).contains(y)),
        "chart points outside the frame: {ys:?}"
    );
    assert!(
        ys.iter().any(|y| *y > 10.5),
        "the chart lies on its top edge: {ys:?}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium_run(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1000".into(),
        url,
    ])
    .await;
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    println!("dashboard screenshot: {}", shot.display());

    let pid = demo.id().expect("demo running");
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(30), demo.wait()).await;
    let _ =
        skyhose_index::drop_database(&format!("postgres://postgres@127.0.0.1:5432/{name}")).await;
    if let Ok(mut conn) = redis_connection().await {
        common::delete_keys(&mut conn, &format!("test:{name}")).await;
    }
}

async fn redis_connection() -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(REDIS)?
        .get_multiplexed_async_connection()
        .await
}
