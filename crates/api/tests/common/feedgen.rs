//! A feed generator on loopback for tests of `getFeed`: it serves its own
//! `did:web` document (`did:web:127.0.0.1%3A<port>`, naming itself as the
//! `#bsky_fg` endpoint) and `app.bsky.feed.getFeedSkeleton` from a list of
//! skeleton items, paged by offset; or, to test failures, answers slowly,
//! with garbage, or with an error status. It records the Authorization
//! header of every skeleton request, so tests see what was passed on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use skyhose_index::CancellationToken;

#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Serves these skeleton items (`{"post": uri, ...}`), `limit` at a
    /// time, with the offset of the next page as the cursor.
    Serve(Vec<Value>),
    /// Answers after this long.
    Slow(Duration),
    /// Answers 200 with a body that is not a skeleton.
    Garbage,
    /// Answers this status with an XRPC error body.
    Status(u16),
}

struct Shared {
    did: String,
    endpoint: String,
    behaviour: Mutex<Behaviour>,
    authorizations: Mutex<Vec<Option<String>>>,
}

pub struct FeedGen {
    pub addr: SocketAddr,
    /// `did:web:127.0.0.1%3A<port>`: put it in a generator record's `did`.
    pub did: String,
    shared: Arc<Shared>,
    token: CancellationToken,
}

impl FeedGen {
    pub async fn start(behaviour: Behaviour) -> FeedGen {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the feed generator");
        let addr = listener.local_addr().expect("addr");
        let did = format!("did:web:127.0.0.1%3A{}", addr.port());
        let shared = Arc::new(Shared {
            did: did.clone(),
            endpoint: format!("http://127.0.0.1:{}", addr.port()),
            behaviour: Mutex::new(behaviour),
            authorizations: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/.well-known/did.json", get(did_document))
            .route("/xrpc/app.bsky.feed.getFeedSkeleton", get(skeleton))
            .with_state(shared.clone());
        let token = CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .expect("feed generator serves");
        });
        FeedGen {
            addr,
            did,
            shared,
            token,
        }
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().expect("behaviour") = behaviour;
    }

    /// The Authorization headers of the skeleton requests so far.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.shared.authorizations.lock().expect("log").clone()
    }
}

impl Drop for FeedGen {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn did_document(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": shared.did,
        "service": [{
            "id": "#bsky_fg",
            "type": "BskyFeedGenerator",
            "serviceEndpoint": shared.endpoint,
        }],
    }))
}

async fn skeleton(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared
        .authorizations
        .lock()
        .expect("log")
        .push(authorization);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let behaviour = shared.behaviour.lock().expect("behaviour").clone();
    match behaviour {
        Behaviour::Serve(items) => {
            let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
            let offset: usize = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
            let page: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
            let next = offset + page.len();
            let mut body = json!({ "feed": page, "reqId": "req-1" });
            if next < items.len() {
                body["cursor"] = json!(next.to_string());
            }
            Json(body).into_response()
        }
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Json(json!({ "feed": [] })).into_response()
        }
        Behaviour::Garbage => (StatusCode::OK, "<html>not a feed</html>").into_response(),
        Behaviour::Status(status) => (
            StatusCode::from_u16(status).expect("status"),
            Json(json!({"error": "UnknownFeed", "message": "no such feed"})),
        )
            .into_response(),
    }
}
