//! A feed generator on loopback, for tests and benchmarks of an AppView's
//! `getFeed`: it serves its own `did:web` document
//! (`did:web:127.0.0.1%3A<port>`, naming itself as the `#bsky_fg`
//! endpoint) and `app.bsky.feed.getFeedSkeleton` from a list of skeleton
//! items, paged by offset; or, to test failures, answers garbage or an
//! error status, or (started with [`FeedGen::start_unresponsive`]) names an
//! endpoint that accepts connections and never answers. It records the
//! Authorization header of every skeleton request, so callers see what an
//! AppView passed on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{json_reply, serve, Handler};

#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Serves these skeleton items (`{"post": uri, ...}`), `limit` at a
    /// time (50 by default), with the offset of the next page as the cursor
    /// and `reqId` "req-1".
    Serve(Vec<Value>),
    /// Answers 200 with a body that is not a skeleton.
    Garbage,
    /// Answers this status with an XRPC error body.
    Status(u16),
}

struct State {
    did: String,
    endpoint: String,
    behaviour: Mutex<Behaviour>,
    authorizations: Mutex<Vec<Option<String>>>,
}

pub struct FeedGen {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FeedGen {
    pub async fn start(behaviour: Behaviour) -> std::io::Result<FeedGen> {
        Self::start_with(behaviour, false).await
    }

    /// A generator whose document names an endpoint that accepts
    /// connections and never answers: an AppView must time out.
    pub async fn start_unresponsive() -> std::io::Result<FeedGen> {
        Self::start_with(Behaviour::Serve(Vec::new()), true).await
    }

    async fn start_with(behaviour: Behaviour, unresponsive: bool) -> std::io::Result<FeedGen> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let endpoint = if unresponsive {
            let silent = TcpListener::bind("127.0.0.1:0").await?;
            let silent_addr = silent.local_addr()?;
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    tokio::select! {
                        accepted = silent.accept() => match accepted {
                            Ok((stream, _)) => held.push(stream),
                            Err(_) => return,
                        },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }));
            format!("http://{silent_addr}")
        } else {
            format!("http://{addr}")
        };
        let state = Arc::new(State {
            did: format!("did:web:127.0.0.1%3A{}", addr.port()),
            endpoint,
            behaviour: Mutex::new(behaviour),
            authorizations: Mutex::new(Vec::new()),
        });
        let handler: Handler = {
            let state = state.clone();
            Arc::new(move |req| answer(&state, req))
        };
        tasks.push(tokio::spawn(serve(
            listener,
            handler,
            shutdown_rx,
            "feedgen",
        )));
        Ok(FeedGen {
            addr,
            state,
            shutdown_tx,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `did:web:127.0.0.1%3A<port>`: the `did` of a generator record this
    /// service serves.
    pub fn did(&self) -> &str {
        &self.state.did
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self
            .state
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// The Authorization headers of the skeleton requests so far.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state
            .authorizations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FeedGen {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn answer(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/.well-known/did.json" => json_reply(
            StatusCode::OK,
            &json!({
                "@context": ["https://www.w3.org/ns/did/v1"],
                "id": state.did,
                "service": [{
                    "id": "#bsky_fg",
                    "type": "BskyFeedGenerator",
                    "serviceEndpoint": state.endpoint,
                }],
            }),
        ),
        "/xrpc/app.bsky.feed.getFeedSkeleton" => skeleton(state, req),
        other => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "MethodNotImplemented", "message": format!("{other} is not served")}),
        ),
    }
}

fn skeleton(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .authorizations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(authorization);
    // `limit` and `cursor` are digits here, so they need no decoding.
    let param = |name: &str| -> Option<usize> {
        req.uri()
            .query()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    let behaviour = state.behaviour.lock().unwrap_or_else(|e| e.into_inner());
    match &*behaviour {
        Behaviour::Serve(items) => {
            let limit = param("limit").unwrap_or(50);
            let offset = param("cursor").unwrap_or(0);
            let page: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
            let next = offset + page.len();
            let mut body = json!({ "feed": page, "reqId": "req-1" });
            if next < items.len() {
                body["cursor"] = json!(next.to_string());
            }
            json_reply(StatusCode::OK, &body)
        }
        Behaviour::Garbage => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"<html>not a feed</html>")));
            *resp.status_mut() = StatusCode::OK;
            resp
        }
        Behaviour::Status(status) => json_reply(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &json!({"error": "UnknownFeed", "message": "no such feed"}),
        ),
    }
}
