//! `skyhose bench api`: an index built from the simulator (kept between runs),
//! the API in this process, and a keep-alive HTTP/1.1 load generator on
//! loopback; prints req/s, p50 and p99 per endpoint. The timeline and
//! notifications are asked as viewers whose tokens the simulated PLC
//! directory vouches for; getFeed hydrates the skeletons of a feed
//! generator served in this process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use redis::AsyncCommands;
use skyhose_api::{ApiConfig, AppState};
use skyhose_index::{CancellationToken, IndexConfig, RowExt};
use skyhose_ingest::{event_to_entry, Compat};
use skyhose_sim::feedgen::{Behaviour, FeedGen};
use skyhose_sim::{plc, Network, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Args, Debug)]
pub struct BenchApiArgs {
    /// Database holding the benchmark index; built from the simulator when it
    /// has fewer than `--events` events, reused otherwise.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/skyhose_bench_api"
    )]
    pub database_url: String,
    #[arg(long = "redis", env = "REDIS_URL", default_value = super::index::DEFAULT_REDIS_URL)]
    pub redis_url: String,
    /// Simulated events indexed into the database (about one in eight is a post).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 20_000)]
    pub accounts: usize,
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Concurrent keep-alive connections of the load generator: clients
    /// each waiting for their answer before asking again, so past the point
    /// where the cores are busy more of them only lengthen the queue.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Load time per endpoint (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = super::index::parse_duration)]
    pub duration: Duration,
    /// Only the endpoints whose NSID contains one of these (e.g. getProfile).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// API connections to PostgreSQL (the API's default).
    #[arg(long, default_value_t = skyhose_api::default_pool_size())]
    pub pool_size: usize,
}

pub async fn api(args: BenchApiArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    skyhose_index::ensure_database(&args.database_url).await?;
    let pool = skyhose_index::connect_pool(&args.database_url, 2)?;
    skyhose_index::migrate(&pool).await?;
    let have = skyhose_index::resume_seq(&pool).await?.unwrap_or(0);
    let client = pool.get().await?;
    if (have as u64) < args.events {
        build_index(&args, have).await?;
        // Servers may run without autovacuum; statistics from the last
        // batches would leave the planner guessing on the tables just grown.
        println!("vacuuming and analysing the index ...");
        client
            .batch_execute("VACUUM ANALYZE")
            .await
            .context("VACUUM ANALYZE of the benchmark index")?;
    }
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM posts) AS posts, \
                    (SELECT count(*) FROM actors WHERE indexed) AS actors, \
                    (SELECT count(*) FROM likes) AS likes, (SELECT count(*) FROM follows) AS follows",
            &[],
        )
        .await?;
    const COUNTING: &str = "counting the benchmark index";
    let (posts, actors, likes, follows): (i64, i64, i64, i64) = (
        counts.col("posts", COUNTING)?,
        counts.col("actors", COUNTING)?,
        counts.col("likes", COUNTING)?,
        counts.col("follows", COUNTING)?,
    );
    println!(
        "index: {posts} posts, {actors} actors, {likes} likes, {follows} follows; {cores} cores"
    );
    let dids: Vec<String> = client
        .query(
            "SELECT did FROM actors WHERE indexed AND status = 'active' ORDER BY random() LIMIT 2000",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.col("did", "sampling actors"))
        .collect::<Result<_, _>>()?;
    let threads: Vec<String> = client
        .query(
            "SELECT p.uri FROM posts p JOIN actors a ON a.did = p.did \
             WHERE p.reply_parent_uri IS NULL AND a.indexed AND a.status = 'active' \
             ORDER BY random() LIMIT 2000",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.col("uri", "sampling threads"))
        .collect::<Result<_, _>>()?;
    let words: Vec<String> = client
        .query(
            "SELECT w FROM (SELECT DISTINCT lower(split_part(text, ' ', 2)) AS w FROM \
               (SELECT text FROM posts ORDER BY random() LIMIT 5000) s) t \
             WHERE length(w) >= 4 AND w ~ '^[a-z]+$' LIMIT 500",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.col("w", "sampling search words"))
        .collect::<Result<_, _>>()?;
    // Viewers who follow someone, for the timeline; their tokens are signed
    // with the simulated accounts' keys, served by the simulated directory.
    let viewers: Vec<(String, String)> = client
        .query(
            "SELECT did, handle FROM actors \
             WHERE indexed AND status = 'active' AND follows > 0 AND handle IS NOT NULL \
             ORDER BY random() LIMIT 200",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.col("did", "sampling viewers")?,
                r.col("handle", "sampling viewers")?,
            ))
        })
        .collect::<Result<_, skyhose_index::IndexError>>()?;
    // One simulated generator record is pointed at the in-process feed
    // generator, which lists recent posts (some since deleted).
    let skeleton: Vec<serde_json::Value> = client
        .query("SELECT uri FROM posts ORDER BY rkey DESC LIMIT 3000", &[])
        .await?
        .iter()
        .map(|r| r.col::<String>("uri", "sampling feed posts"))
        .map(|uri| uri.map(|post| serde_json::json!({ "post": post })))
        .collect::<Result<_, _>>()?;
    let generator = FeedGen::start(Behaviour::Serve(skeleton)).await?;
    let feed: Option<String> = client
        .query_opt(
            "UPDATE feed_generators SET service_did = $1 WHERE uri = ( \
                 SELECT g.uri FROM feed_generators g JOIN actors a ON a.did = g.did \
                 WHERE a.indexed AND a.status = 'active' ORDER BY g.uri LIMIT 1) RETURNING uri",
            &[&generator.did()],
        )
        .await?
        .map(|r| r.col("uri", "pointing a generator at the bench feed"))
        .transpose()?;
    drop(client);
    if dids.is_empty() || threads.is_empty() {
        bail!("the benchmark index has no actors or posts");
    }

    let sim = sim_config(&args);
    let plc = plc::start(plc::PlcConfig {
        sim: sim.clone(),
        ..plc::PlcConfig::default()
    })
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut cfg = ApiConfig::new(&args.database_url);
    cfg.listen = addr;
    cfg.pool_size = args.pool_size;
    cfg.plc_url = plc.url();
    cfg.allow_loopback_identity = true;
    for (did, handle) in &viewers {
        plc.register(did, handle);
    }
    let bearer = |did: &str, lxm: &str| {
        format!(
            "\nAuthorization: Bearer {}",
            plc::mint_service_auth(&sim, did, &cfg.service_did, lxm, 3600)
        )
    };
    // A page of 30 of `nsid` asked as each viewer, with a token for it.
    let as_viewers = |nsid: &str| -> Vec<String> {
        viewers
            .iter()
            .map(|(did, _)| format!("/xrpc/{nsid}?limit=30{}", bearer(did, nsid)))
            .collect()
    };
    let timelines = as_viewers("app.bsky.feed.getTimeline");
    let notifications = as_viewers("app.bsky.notification.listNotifications");
    let feeds: Vec<String> = feed
        .iter()
        .flat_map(|uri| {
            (0..100).map(move |page| {
                format!(
                    "/xrpc/app.bsky.feed.getFeed?feed={}&limit=30&cursor={}",
                    enc(uri),
                    page * 30
                )
            })
        })
        .collect();
    let api_pool = skyhose_api::connect_pool(&cfg)?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(skyhose_api::serve_on(
        listener,
        AppState::new(api_pool, cfg, None),
        stop.clone(),
    ));

    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>8}   ({} connections, {:?} each)",
        "endpoint", "req/s", "p50 ms", "p99 ms", "errors", args.connections, args.duration
    );
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "app.bsky.actor.getProfile",
            dids.iter()
                .map(|d| format!("/xrpc/app.bsky.actor.getProfile?actor={}", enc(d)))
                .collect(),
        ),
        (
            "app.bsky.feed.getAuthorFeed",
            dids.iter()
                .map(|d| {
                    format!(
                        "/xrpc/app.bsky.feed.getAuthorFeed?actor={}&limit=30",
                        enc(d)
                    )
                })
                .collect(),
        ),
        (
            "app.bsky.feed.getPostThread",
            threads
                .iter()
                .map(|u| format!("/xrpc/app.bsky.feed.getPostThread?uri={}", enc(u)))
                .collect(),
        ),
        (
            "app.bsky.unspecced.getPostThreadV2",
            threads
                .iter()
                .map(|u| format!("/xrpc/app.bsky.unspecced.getPostThreadV2?anchor={}", enc(u)))
                .collect(),
        ),
        ("app.bsky.feed.getTimeline", timelines),
        ("app.bsky.feed.getFeed", feeds),
        ("app.bsky.notification.listNotifications", notifications),
        (
            "app.bsky.feed.searchPosts",
            words
                .iter()
                .map(|w| format!("/xrpc/app.bsky.feed.searchPosts?q={w}&limit=25"))
                .collect(),
        ),
    ];
    for (name, paths) in cases {
        if !args.only.is_empty() && !args.only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        if paths.is_empty() {
            println!("{name:<28} skipped: nothing to ask for");
            continue;
        }
        let result = load(addr, Arc::new(paths), args.connections, args.duration).await;
        let (p50, p99) = (result.percentile(0.50), result.percentile(0.99));
        println!(
            "{name:<28} {:>9.0} {:>9.2} {:>9.2} {:>8}",
            result.ok as f64 / result.elapsed.as_secs_f64(),
            p50,
            p99,
            result.errors
        );
        if result.errors > 0 {
            if let Some(sample) = result.sample_error {
                println!("  e.g. {sample}");
            }
        }
    }
    stop.cancel();
    let _ = server.await;
    drop(generator);
    plc.shutdown().await;
    Ok(())
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

/// The simulated network the index is built from; its directory signs the
/// viewers' tokens.
fn sim_config(args: &BenchApiArgs) -> SimConfig {
    SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        ..SimConfig::default()
    }
}

/// Indexes simulated events from `have` up to `args.events` through a stream.
async fn build_index(args: &BenchApiArgs, have: i64) -> anyhow::Result<()> {
    let stream = format!("bench:api:{}:events", std::process::id());
    let client = skyhose_connect::redis_client(&args.redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut network = Network::new(sim_config(args));
    println!(
        "building the benchmark index: events {}..{} (kept for later runs)",
        have + 1,
        args.events
    );
    let started = Instant::now();
    let mut generated = 0u64;
    let mut cfg = IndexConfig::new(&args.redis_url, &args.database_url);
    cfg.stream_key = stream.clone();
    cfg.dead_letter_key = format!("{stream}:dead");
    cfg.group = "bench-api".into();
    cfg.workers = 2;
    cfg.batch_size = 1000;
    cfg.block = Duration::from_millis(200);
    cfg.exit_when_drained = true;
    // Fill and index in slices so the stream stays small.
    while generated < args.events {
        let mut pipe = redis::pipe();
        let mut queued = 0;
        while generated < args.events && queued < 200_000 {
            let event = network.next_event();
            generated += 1;
            if (generated as i64) <= have {
                continue;
            }
            let Some(entry) = event_to_entry(&event, Compat::Full)? else {
                continue;
            };
            let seq = entry.seq.to_string();
            pipe.xadd(
                &stream,
                "*",
                &[
                    ("type", entry.kind.as_str()),
                    ("data", &entry.data),
                    ("seq", &seq),
                ],
            )
            .ignore();
            queued += 1;
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .context("filling the stream")?;
        skyhose_index::run(cfg.clone(), CancellationToken::new())
            .await
            .context("indexing")?;
        let _: () = conn
            .xtrim(&stream, redis::streams::StreamMaxlen::Equals(0))
            .await?;
        println!(
            "  {generated} events indexed ({:.0} events/s)",
            generated as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
    }
    let _: () = conn.del(&[&stream, &format!("{stream}:dead")]).await?;
    Ok(())
}

pub(super) struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    pub sample_error: Option<String>,
}

impl LoadResult {
    pub(super) fn percentile(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Keep-alive GETs of `paths`, round robin over `connections`, for `duration`.
pub(super) async fn load(
    addr: SocketAddr,
    paths: Arc<Vec<String>>,
    connections: usize,
    duration: Duration,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut sample_error = None;
            let mut i = c * 7919;
            let mut stream = None;
            while Instant::now() < deadline {
                if stream.is_none() {
                    stream = TcpStream::connect(addr).await.ok();
                }
                let Some(s) = stream.as_mut() else {
                    errors += 1;
                    continue;
                };
                let path = &paths[i % paths.len()];
                i += 1;
                let t = Instant::now();
                match request(s, path).await {
                    Ok((200, _)) => latencies.push(t.elapsed().as_micros() as u32),
                    Ok((status, body)) => {
                        errors += 1;
                        sample_error.get_or_insert(format!("{status} {body}"));
                    }
                    Err(e) => {
                        errors += 1;
                        sample_error.get_or_insert(e.to_string());
                        stream = None;
                    }
                }
            }
            (latencies, errors, sample_error)
        }));
    }
    let mut result = LoadResult {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        sample_error: None,
    };
    for task in tasks {
        if let Ok((latencies, errors, sample)) = task.await {
            result.ok += latencies.len() as u64;
            result.errors += errors;
            result.latencies_us.extend(latencies);
            if result.sample_error.is_none() {
                result.sample_error = sample;
            }
        }
    }
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    result
}

/// One keep-alive GET; the body is read by its Content-Length. `path` may
/// carry header lines after a newline (a viewer's Authorization).
async fn request(stream: &mut TcpStream, path: &str) -> std::io::Result<(u16, String)> {
    let (path, headers) = path.split_once('\n').unwrap_or((path, ""));
    let headers: String = headers.lines().map(|h| format!("{h}\r\n")).collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("response without content-length"))?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = if status == 200 {
        String::new()
    } else {
        String::from_utf8_lossy(&buf[head_end..head_end + length])
            .chars()
            .take(200)
            .collect()
    };
    Ok((status, body))
}
