//! A backfill over a small network served on loopback by a test PDS (which
//! is also the PLC directory): repos listed in pages, fetched, verified and
//! loaded into a fresh database, compared with what the repos hold; a host
//! that answers 429 is waited for; corrupt CARs, forged signatures and
//! missing repos are recorded as failed with their reason.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use skyhose_proto::cbor::{encode, Value};
use skyhose_proto::crypto::{Curve, SigningKey};
use skyhose_proto::mst::Mst;
use skyhose_proto::repo::{write_repo_car, Commit};
use skyhose_proto::Cid;
use skyhose_sync::{BackfillConfig, CancellationToken};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// 429 with `ratelimit-reset` once, then the repo.
    RateLimitedOnce,
    /// The CAR with a byte of a record flipped.
    CorruptCar,
    /// The commit signed by another key.
    ForgedSignature,
    /// `RepoNotFound`.
    Missing,
}

struct Account {
    did: String,
    key: SigningKey,
    fault: Fault,
    car: Vec<u8>,
    /// uri -> cid of every record.
    records: BTreeMap<String, String>,
}

#[derive(Default)]
struct Log {
    /// did -> when each getRepo of it was answered.
    get_repo: HashMap<String, Vec<Instant>>,
}

struct Network {
    accounts: Vec<Account>,
    log: Mutex<Log>,
}

/// A valid did:plc (24 base32 characters) for account `i`.
fn did(i: usize) -> String {
    let digits: String = format!("{i:020}")
        .bytes()
        .map(|d| char::from(b'a' + (d - b'0')))
        .collect();
    format!("did:plc:acct{digits}")
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(Curve::K256, &[seed; 32]).unwrap()
}

fn record(kind: &str, fields: Vec<(&str, Value)>) -> Vec<u8> {
    let mut entries = vec![
        ("$type", Value::from(kind)),
        ("createdAt", Value::from("2024-01-01T00:00:00.000Z")),
    ];
    entries.extend(fields);
    encode(&Value::map(entries))
}

fn build(n: usize, faults: &[(usize, Fault)]) -> Network {
    let dids: Vec<String> = (0..n).map(did).collect();
    let mut accounts = Vec::new();
    for (i, did) in dids.iter().enumerate() {
        let fault = faults
            .iter()
            .find(|(at, _)| *at == i)
            .map_or(Fault::None, |(_, fault)| *fault);
        let key = signing_key(i as u8 + 1);
        let mut blocks: Vec<(String, Vec<u8>)> = Vec::new();
        for p in 0..3 {
            blocks.push((
                format!("app.bsky.feed.post/3kpost{p:08}"),
                record(
                    "app.bsky.feed.post",
                    vec![("text", Value::from(format!("post {p} of {i}")))],
                ),
            ));
        }
        // Likes of the next account's first post, a follow of it.
        let next = &dids[(i + 1) % n];
        let subject = format!("at://{next}/app.bsky.feed.post/3kpost00000000");
        blocks.push((
            "app.bsky.feed.like/3klike00000000".into(),
            record(
                "app.bsky.feed.like",
                vec![(
                    "subject",
                    Value::map([
                        ("uri", Value::from(subject)),
                        ("cid", Value::from("bafyreia")),
                    ]),
                )],
            ),
        ));
        blocks.push((
            "app.bsky.graph.follow/3kfollow000000".into(),
            record(
                "app.bsky.graph.follow",
                vec![("subject", Value::from(next.as_str()))],
            ),
        ));
        blocks.push((
            "app.bsky.actor.profile/self".into(),
            record(
                "app.bsky.actor.profile",
                vec![("displayName", Value::from(format!("acct {i}")))],
            ),
        ));
        let mut mst = Mst::new();
        let mut records = BTreeMap::new();
        let mut record_blocks = Vec::new();
        for (path, bytes) in &blocks {
            let cid = Cid::for_dag_cbor(bytes);
            mst.insert(path.clone(), cid);
            records.insert(format!("at://{did}/{path}"), cid.to_string());
            record_blocks.push((cid, bytes.clone()));
        }
        let signer = if fault == Fault::ForgedSignature {
            signing_key(200)
        } else {
            key.clone()
        };
        let root = mst.root();
        let (commit_cid, commit_block, _) =
            Commit::signed(did, root, "3kaaaaaaaaaa2", None, &signer);
        let mut car = write_repo_car(
            commit_cid,
            &commit_block,
            &mut mst,
            record_blocks.iter().map(|(c, b)| (*c, b.as_slice())),
        );
        if fault == Fault::CorruptCar {
            let at = car.len() - 5;
            car[at] ^= 0x55;
        }
        accounts.push(Account {
            did: did.clone(),
            key,
            fault,
            car,
            records,
        });
    }
    Network {
        accounts,
        log: Mutex::new(Log::default()),
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn answer(net: &Network, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("").replace("%3A", ":");
    let json = |status: u16, body: serde_json::Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    match path {
        "/xrpc/com.atproto.sync.listHosts" => {
            json(404, serde_json::json!({"error": "MethodNotImplemented"}))
        }
        "/xrpc/com.atproto.sync.listRepos" => {
            // Pages of two.
            let start: usize = query_param(&query, "cursor")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let page: Vec<_> = net.accounts.iter().skip(start).take(2).map(|a| {
                serde_json::json!({"did": a.did, "head": "bafyhead", "rev": "3kaaaaaaaaaa2", "active": true})
            }).collect();
            let cursor = (start + 2 < net.accounts.len()).then(|| (start + 2).to_string());
            json(200, serde_json::json!({"repos": page, "cursor": cursor}))
        }
        "/xrpc/com.atproto.sync.getRepo" => {
            let did = query_param(&query, "did").unwrap_or_default();
            let Some(account) = net.accounts.iter().find(|a| a.did == did) else {
                return json(
                    400,
                    serde_json::json!({"error": "RepoNotFound", "message": "no such repo"}),
                );
            };
            let calls = {
                let mut log = net.log.lock().unwrap();
                let calls = log.get_repo.entry(did.to_owned()).or_default();
                calls.push(Instant::now());
                calls.len()
            };
            match account.fault {
                Fault::Missing => json(
                    400,
                    serde_json::json!({"error": "RepoNotFound", "message": "gone"}),
                ),
                Fault::RateLimitedOnce if calls == 1 => Response::builder()
                    .status(429)
                    .header("ratelimit-remaining", "0")
                    .header("ratelimit-reset", "1")
                    .body(Full::new(Bytes::from_static(
                        b"{\"error\":\"RateLimitExceeded\"}",
                    )))
                    .unwrap(),
                _ => Response::builder()
                    .status(200)
                    .header("content-type", "application/vnd.ipld.car")
                    .body(Full::new(Bytes::from(account.car.clone())))
                    .unwrap(),
            }
        }
        did_path => {
            let did = did_path.trim_start_matches('/');
            match net.accounts.iter().find(|a| a.did == did) {
                Some(account) => json(
                    200,
                    serde_json::json!({
                        "id": account.did,
                        "alsoKnownAs": [],
                        "verificationMethod": [{
                            "id": format!("{}#atproto", account.did),
                            "type": "Multikey",
                            "controller": account.did,
                            "publicKeyMultibase": account.key.public_key().to_multikey(),
                        }],
                    }),
                ),
                None => json(404, serde_json::json!({"message": "DID not registered"})),
            }
        }
    }
}

async fn serve(net: Arc<Network>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let net = net.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = answer(&net, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn database_url() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "postgres://postgres@127.0.0.1:5432/skyhose_test_sync_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_a_network_and_records_what_it_refuses() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let faults = [
        (1, Fault::RateLimitedOnce),
        (3, Fault::CorruptCar),
        (4, Fault::ForgedSignature),
        (6, Fault::Missing),
    ];
    let net = Arc::new(build(9, &faults));
    let addr = serve(net.clone()).await;
    let url = format!("http://{addr}");
    let database_url = database_url();
    let mut config = BackfillConfig::new(
        &database_url,
        skyhose_identity::IdentityConfig::loopback(url.clone()),
    );
    config.sources = vec![url.clone()];
    config.concurrency = 3;
    config.per_host = 2;
    config.log_every = Duration::from_millis(200);
    let summary = skyhose_sync::run(config.clone(), None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.repos_done, 6, "{summary:?}");
    assert_eq!(summary.repos_failed, 3, "{summary:?}");

    // Exactly the good repos' records, with their counts.
    let pool = skyhose_index::connect_pool(&database_url, 2).unwrap();
    let snapshot = skyhose_index::snapshot(&pool).await.unwrap();
    let expected: BTreeMap<String, String> = net
        .accounts
        .iter()
        .filter(|a| matches!(a.fault, Fault::None | Fault::RateLimitedOnce))
        .flat_map(|a| a.records.clone())
        .collect();
    assert_eq!(snapshot.records, expected);
    for (i, account) in net.accounts.iter().enumerate() {
        let liked_by = &net.accounts[(i + net.accounts.len() - 1) % net.accounts.len()];
        let loaded = |a: &Account| matches!(a.fault, Fault::None | Fault::RateLimitedOnce);
        if !loaded(account) {
            continue;
        }
        let post = format!("at://{}/app.bsky.feed.post/3kpost00000000", account.did);
        let likes = snapshot.posts.get(&post).map_or(-1, |p| p.likes);
        assert_eq!(likes, i64::from(loaded(liked_by)), "{post}");
        assert_eq!(snapshot.actors[&account.did].posts, 3);
    }

    // The 429 was honoured: the second getRepo came after the reset.
    {
        let log = net.log.lock().unwrap();
        let calls = &log.get_repo[&net.accounts[1].did];
        assert_eq!(calls.len(), 2);
        assert!(
            calls[1] - calls[0] >= Duration::from_millis(900),
            "{calls:?}"
        );
    }

    // Failures are recorded with their reasons.
    let status = skyhose_sync::Queue::new(pool.clone())
        .status(10)
        .await
        .unwrap();
    assert_eq!(
        (status.done, status.failed, status.pending, status.running),
        (6, 3, 0, 0)
    );
    let reasons: BTreeMap<String, String> = status
        .last_errors
        .iter()
        .map(|(did, reason, _)| (did.clone(), reason.clone()))
        .collect();
    assert_eq!(reasons[&net.accounts[4].did], "bad_signature");
    assert_eq!(reasons[&net.accounts[6].did], "repo_not_found");
    assert!(!reasons[&net.accounts[3].did].is_empty());
    assert_eq!(status.sources, vec![(url.clone(), true)]);
    assert_eq!(
        status.by_reason,
        vec![
            ("listed".to_owned(), "done".to_owned(), 6),
            ("listed".to_owned(), "failed".to_owned(), 3),
        ]
    );
    let printed = status.to_string();
    assert!(
        printed.contains("repos: 0 pending, 0 running, 6 done, 3 failed;")
            && printed.contains("\n  listed: 6 done, 3 failed\n")
            && printed.contains(&format!("  {} repo_not_found: ", net.accounts[6].did)),
        "{printed}"
    );

    // A second run finds nothing to do; --did loads a repo again.
    let again = skyhose_sync::run(config.clone(), None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(again.repos_done, 0);
    let mut one = config.clone();
    one.dids = vec![net.accounts[0].did.clone()];
    one.enumerate = false;
    let reloaded = skyhose_sync::run(one, None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(reloaded.repos_done, 1);
    assert_eq!(skyhose_index::snapshot(&pool).await.unwrap(), snapshot);

    // A process that died holding claims: its repos stay `running` until the
    // claims are older than the reclaim time, then load again, equal.
    let client = pool.get().await.unwrap();
    let held = client
        .execute(
            "UPDATE backfill_repos SET state = 'running', claimed_at = now() - interval '1 hour' \
             WHERE state = 'done'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(held, 6);
    drop(client);
    let resumed = skyhose_sync::run(config.clone(), None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(resumed.repos_done, 6);
    let status = skyhose_sync::Queue::new(pool.clone())
        .status(10)
        .await
        .unwrap();
    assert_eq!((status.done, status.failed, status.running), (6, 3, 0));
    assert_eq!(skyhose_index::snapshot(&pool).await.unwrap(), snapshot);
    drop(pool);
    skyhose_index::drop_database(&database_url).await.unwrap();
}

/// A rough rate on this machine (`cargo test --release -- --ignored
/// throughput --nocapture`): N repos of likes, fetched over loopback,
/// verified and loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let repos = 40;
    let per_repo = 500;
    let mut net = build(repos, &[]);
    for (i, account) in net.accounts.iter_mut().enumerate() {
        let mut mst = Mst::new();
        let mut blocks = Vec::new();
        account.records.clear();
        for r in 0..per_repo {
            let subject = format!(
                "at://{}/app.bsky.feed.post/3kpost{r:08}",
                did((i + 1) % repos)
            );
            let bytes = record(
                "app.bsky.feed.like",
                vec![(
                    "subject",
                    Value::map([
                        ("uri", Value::from(subject)),
                        ("cid", Value::from("bafyreia")),
                    ]),
                )],
            );
            let cid = Cid::for_dag_cbor(&bytes);
            let path = format!("app.bsky.feed.like/3klike{r:08}");
            mst.insert(path.clone(), cid);
            account
                .records
                .insert(format!("at://{}/{path}", account.did), cid.to_string());
            blocks.push((cid, bytes));
        }
        let root = mst.root();
        let (commit_cid, commit_block, _) =
            Commit::signed(&account.did, root, "3kaaaaaaaaaa2", None, &account.key);
        account.car = write_repo_car(
            commit_cid,
            &commit_block,
            &mut mst,
            blocks.iter().map(|(c, b)| (*c, b.as_slice())),
        );
    }
    let bytes: usize = net.accounts.iter().map(|a| a.car.len()).sum();
    let net = Arc::new(net);
    let url = format!("http://{}", serve(net.clone()).await);
    let database_url = database_url();
    let mut config = BackfillConfig::new(
        &database_url,
        skyhose_identity::IdentityConfig::loopback(url.clone()),
    );
    config.sources = vec![url];
    config.concurrency = 4;
    // The schema first, outside the timing.
    skyhose_index::ensure_database(&database_url).await.unwrap();
    let pool = skyhose_index::connect_pool(&database_url, 1).unwrap();
    skyhose_index::migrate(&pool).await.unwrap();
    let started = Instant::now();
    let summary = skyhose_sync::run(config, None, CancellationToken::new())
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(summary.records, (repos * per_repo) as u64);
    println!(
        "{} repos, {} records, {:.1} MB in {secs:.2}s: {:.0} records/s, {:.1} repos/s, {:.2} MB/s",
        repos,
        summary.records,
        bytes as f64 / 1e6,
        summary.records as f64 / secs,
        repos as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    drop(pool);
    skyhose_index::drop_database(&database_url).await.unwrap();
}
