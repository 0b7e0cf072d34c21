//! Repo sync against the reference PDS, as recorded by
//! `scripts/parity/record.sh`: a loopback server answers with what the PDS
//! served (`listRepos` pages, each account's `getRepo` CAR, each handle's
//! `/.well-known/atproto-did`) and what its PLC directory served (the DID
//! documents, in the older `EcdsaSecp256k1VerificationKey2019` form). A
//! fresh index is filled only by the backfill from it, the identity task
//! verifies the handles, and then the API's answers about profiles,
//! handles, posts, counts, follows, likes and threads must equal the
//! official AppView's recorded ones, under the parity test's normalisation
//! and its list of known differences.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use common::parity::{self, Replayer};
use common::{drop_stale_databases, index_entries, unique_id};
use serde::Deserialize;
use serde_json::Value;
use skyhose_identity::{IdentityConfig, Resolver};
use skyhose_index::identity::IdentityTaskOptions;
use skyhose_ingest::{event_to_entry_with, Compat, ConvertOptions};
use skyhose_proto::decode::{decode, Decoded};
use skyhose_proto::frame::Event;
use skyhose_sync::{BackfillConfig, CancellationToken};

/// The methods whose answers come from what a backfill loads.
const METHODS: &[&str] = &[
    "app.bsky.actor.getProfile",
    "app.bsky.actor.getProfiles",
    "com.atproto.identity.resolveHandle",
    "app.bsky.feed.getPosts",
    "app.bsky.feed.getAuthorFeed",
    "app.bsky.feed.getPostThread",
    "app.bsky.feed.getLikes",
    "app.bsky.graph.getFollowers",
    "app.bsky.graph.getFollows",
];

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
    status: u16,
    body: Value,
}

#[derive(Deserialize)]
struct Repo {
    status: u16,
    car: Option<String>,
    body: Option<Value>,
}

#[derive(Deserialize)]
struct Answer {
    status: u16,
    body: String,
}

#[derive(Deserialize)]
struct Document {
    did: String,
    status: u16,
    document: Value,
}

/// What the reference PDS and its PLC directory served, as recorded.
struct Recorded {
    pages: Vec<Page>,
    repos: BTreeMap<String, (u16, Vec<u8>, Option<Value>)>,
    well_known: BTreeMap<String, Answer>,
    documents: BTreeMap<String, (u16, Value)>,
    /// The PDS's URL in the documents, replaced by the server's own.
    pds_url: String,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_recorded() -> Recorded {
    let dir = parity::parity_dir();
    let pds = dir.join("pds");
    let pages: Vec<Page> = read_json(&pds.join("listRepos.json"));
    let repo_index: BTreeMap<String, Repo> = read_json(&pds.join("repos.json"));
    let repos = repo_index
        .into_iter()
        .map(|(did, repo)| {
            let car = repo
                .car
                .map(|file| std::fs::read(pds.join(&file)).expect("recorded CAR"))
                .unwrap_or_default();
            (did, (repo.status, car, repo.body))
        })
        .collect();
    let well_known = read_json(&pds.join("wellKnown.json"));
    let by_name: BTreeMap<String, Document> = read_json(&dir.join("dids.json"));
    let mut pds_url = String::new();
    let documents = by_name
        .into_values()
        .map(|d| {
            if let Some(endpoint) = d.document["service"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["id"] == "#atproto_pds")
                .and_then(|s| s["serviceEndpoint"].as_str())
            {
                pds_url = endpoint.to_owned();
            }
            (d.did, (d.status, d.document))
        })
        .collect();
    Recorded {
        pages,
        repos,
        well_known,
        documents,
        pds_url,
    }
}

fn json(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn answer(rec: &Recorded, own_url: &str, req: &Request<Body>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    match req.uri().path() {
        // What the PDS answers to a method it does not implement.
        "/xrpc/com.atproto.sync.listHosts" => json(
            501,
            &serde_json::json!({"error": "MethodNotImplemented", "message": "Method Not Implemented"}),
        ),
        "/xrpc/com.atproto.sync.listRepos" => {
            let cursor = query_param(query, "cursor");
            match rec.pages.iter().find(|p| p.cursor == cursor) {
                Some(page) => json(page.status, &page.body),
                None => json(400, &serde_json::json!({"error": "InvalidRequest"})),
            }
        }
        "/xrpc/com.atproto.sync.getRepo" => {
            let did = query_param(query, "did").unwrap_or_default();
            match rec.repos.get(&did) {
                Some((200, car, _)) => Response::builder()
                    .header(header::CONTENT_TYPE, "application/vnd.ipld.car")
                    .body(Body::from(car.clone()))
                    .unwrap(),
                Some((status, _, body)) => json(*status, body.as_ref().unwrap_or(&Value::Null)),
                None => json(
                    400,
                    &serde_json::json!({"error": "RepoNotFound", "message": "Could not find repo"}),
                ),
            }
        }
        "/.well-known/atproto-did" => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let handle = host.split(':').next().unwrap_or_default();
            let (status, body) = rec
                .well_known
                .get(handle)
                .map_or((404, "User not found".to_owned()), |a| {
                    (a.status, a.body.clone())
                });
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from(body))
                .unwrap()
        }
        did_path => match rec.documents.get(did_path.trim_start_matches('/')) {
            Some((status, document)) => {
                let text = document.to_string().replace(&rec.pds_url, own_url);
                json(*status, &serde_json::from_str(&text).unwrap())
            }
            None => json(404, &serde_json::json!({"message": "DID not registered"})),
        },
    }
}

/// The recorded PDS, PLC directory and handle host on one loopback port.
async fn serve(rec: Arc<Recorded>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let own_url = format!("http://{addr}");
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let rec = rec.clone();
        let own_url = own_url.clone();
        async move { answer(&rec, &own_url, &req) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Runs the identity task's rounds until nothing is due.
async fn resolve_identities(pool: &skyhose_index::Pool, identity: &IdentityConfig) {
    let resolver = Resolver::new(identity.clone());
    let options = IdentityTaskOptions::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        skyhose_index::identity::round(pool, &resolver, &options)
            .await
            .expect("identity round");
        let due: i64 = pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) AS due FROM actors WHERE identity_due_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get("due");
        if due == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{due} identities still due");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The recorded `#identity` of `did` that carries no handle, as a stream
/// entry.
fn handleless_identity(did: &str) -> skyhose_ingest::StreamEntry {
    let frames = skyhose_sim::capture::read_capture(&parity::parity_dir().join("frames.cap"))
        .expect("recorded frames");
    let opts = ConvertOptions {
        compat: Compat::Full,
        verify_cids: true,
    };
    frames
        .iter()
        .find_map(|frame| match decode(frame) {
            Ok(Decoded::Event(Event::Identity(i))) if i.did == did && i.handle.is_none() => {
                event_to_entry_with(&Event::Identity(i), opts).expect("recorded event")
            }
            _ => None,
        })
        .expect("a recorded #identity without a handle")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_from_the_reference_pds_answers_as_the_official_appview() {
    let started = Instant::now();
    let rec = Arc::new(load_recorded());
    let listed: Vec<String> = rec
        .pages
        .iter()
        .flat_map(|p| p.body["repos"].as_array().cloned().unwrap_or_default())
        // An inactive (taken down) repo is listed but cannot be fetched.
        .filter(|r| r["active"].as_bool() != Some(false))
        .filter_map(|r| r["did"].as_str().map(str::to_owned))
        .collect();
    let addr = serve(rec.clone()).await;
    let url = format!("http://{addr}");

    let id = unique_id();
    let database_url = format!("postgres://postgres@127.0.0.1:5432/skyhose_apitest_{id}");
    drop_stale_databases().await;
    let mut identity = IdentityConfig::loopback(url.clone());
    identity.handle_resolver = Some(url.clone());
    let mut config = BackfillConfig::new(&database_url, identity.clone());
    config.sources = vec![url.clone()];
    config.log_every = Duration::from_millis(500);
    let summary = skyhose_sync::run(config, None, CancellationToken::new())
        .await
        .expect("backfill");
    assert_eq!(
        (summary.repos_done, summary.repos_failed),
        (listed.len() as u64, 0),
        "{summary:?}"
    );

    let pool = skyhose_index::connect_pool(&database_url, 2).unwrap();
    resolve_identities(&pool, &identity).await;

    let fixtures: Vec<_> = parity::load_fixtures(&parity::parity_dir())
        .into_iter()
        .filter(|f| METHODS.contains(&f.method.as_str()))
        .collect();
    assert_eq!(fixtures.len(), METHODS.len(), "a method was not recorded");
    let replayer = Replayer::start(&database_url).await;
    let (_, mut found) = replayer
        .call_procedures(&parity::load_procedures(&parity::parity_dir()))
        .await;
    let (tally, read) = replayer.replay(&fixtures).await;
    found.extend(read);
    println!(
        "reference backfill: {} repos, {} records; {} methods, {} requests, {} compared fields, \
         {} requests match, {} differ",
        summary.repos_done,
        summary.records,
        tally.methods,
        tally.requests,
        tally.fields,
        tally.matching,
        found.len()
    );
    // Its own list: a backfill cannot see what the firehose showed of
    // accounts that are gone or taken down by the time it runs.
    parity::check_known(&found, "known_differences_backfill.json");

    // An #identity without a handle (what publish-identity sends) makes the
    // account due again; the handle is verified again, not erased.
    let dan = rec
        .well_known
        .get("dan.test")
        .map(|a| a.body.clone())
        .expect("dan's handle recorded");
    index_entries(
        &database_url,
        &format!("refbackfill:{id}"),
        std::iter::once(handleless_identity(&dan)),
    )
    .await;
    resolve_identities(&pool, &identity).await;
    let (status, body) = replayer
        .server
        .get("app.bsky.actor.getProfile", &format!("actor={dan}"))
        .await;
    assert_eq!((status, body["handle"].as_str()), (200, Some("dan.test")));
    let (status, body) = replayer
        .server
        .get("com.atproto.identity.resolveHandle", "handle=dan.test")
        .await;
    assert_eq!((status, body["did"].as_str()), (200, Some(dan.as_str())));

    replayer.shutdown().await;
    drop(pool);
    skyhose_index::drop_database(&database_url).await.unwrap();
    println!("reference backfill: {:.1?}", started.elapsed());
}
