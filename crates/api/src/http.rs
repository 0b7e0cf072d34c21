//! The HTTP surface: `/xrpc/<nsid>`, `/xrpc/_health`, `/metrics`, request
//! metrics and limits (size, concurrency, a whole-request timeout) and the
//! 500 that a panicking handler turns into.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Path, RawQuery, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::dashboard;
use crate::error::XrpcError;
use crate::listener::{self, Limits};
use crate::routes;
use crate::AppState;

pub const REQUESTS: &str = "skyhose_api_requests_total";
pub const LATENCY: &str = "skyhose_api_request_seconds";
/// Handler panics, each answered with a 500.
pub const PANICS: &str = "skyhose_api_panics_total";

/// Installs the process-wide Prometheus recorder with latency buckets suited
/// to API requests. Call once per process.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(LATENCY.into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// The API: [`api_routes`] behind [`with_layers`].
pub fn router(state: AppState) -> Router {
    with_layers(api_routes(), state)
}

/// The API's routes without its limits and metrics.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/stats.json", get(dashboard::stats))
        .route("/xrpc/_health", get(health))
        .route("/.well-known/did.json", get(did_document))
        .route("/xrpc/{nsid}", get(xrpc).post(procedure))
        .route("/metrics", get(render_metrics))
}

/// `routes` behind the API's request limits and metrics; tests add routes
/// (a handler that panics, say) to see how the layers treat them.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    describe_metrics();
    let limit = state.config.max_concurrent_requests;
    let max_request_bytes = state.config.max_request_bytes;
    routes
        // Innermost, so that the layers outside see the 500 as any other
        // response: the concurrency permit is given back and it is counted.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::new(tokio::sync::Semaphore::new(limit)),
            limit_concurrency,
        ))
        // Outside the concurrency limit, so the wait for a turn counts too.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.config.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            max_request_bytes,
            limit_request_size,
        ))
        // A body sent without a length is cut at the same limit.
        .layer(axum::extract::DefaultBodyLimit::max(max_request_bytes))
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
}

/// The API's counters at zero, so that they are exported before the first
/// event of their kind.
fn describe_metrics() {
    for name in [
        PANICS,
        crate::error::QUERY_TIMEOUTS,
        crate::error::DB_ERRORS,
        crate::error::POOL_WAIT_TIMEOUTS,
        crate::error::AUTH_FAILURES,
        routes::BAD_INPUT,
    ] {
        metrics::counter!(name).increment(0);
    }
    listener::describe_metrics();
}

/// A panicking handler is a bug: the client gets an XRPC 500, the log the
/// panic's message, and the worker thread lives on.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    metrics::counter!(PANICS).increment(1);
    tracing::error!(panic = %message, "an API handler panicked; answered 500");
    XrpcError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "Internal Server Error",
    )
    .into_response()
}

/// Binds `config.listen` and serves until `token` is cancelled; in-flight
/// requests finish first.
pub async fn serve(state: AppState, token: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    serve_on(listener, state, token).await
}

pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    token: CancellationToken,
) -> std::io::Result<()> {
    let limits = Limits::from_config(&state.config);
    serve_router(listener, router(state), limits, token).await
}

/// Serves `app` (the API from [`with_layers`]) with the connection limits of
/// `limits`.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    token: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(url = %format!("http://{addr}"), "serving XRPC");
    listener::serve(listener, app, limits, token).await
}

async fn xrpc(
    State(state): State<AppState>,
    Path(nsid): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = routes::dispatch(&state, &nsid, query.as_deref(), &headers).await;
    let elapsed = started.elapsed();
    if elapsed > Duration::from_secs(1) {
        tracing::warn!(%nsid, ms = elapsed.as_millis() as u64, "slow request");
    }
    match result {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn procedure(
    State(state): State<AppState>,
    Path(nsid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match routes::dispatch_procedure(&state, &nsid, &headers, &body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn health(State(state): State<AppState>) -> Response {
    let check = async {
        let client = state.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok::<_, XrpcError>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => Json(json!({"version": env!("CARGO_PKG_VERSION")})).into_response(),
        Ok(Err(err)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"version": env!("CARGO_PKG_VERSION"), "error": err.message})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"version": env!("CARGO_PKG_VERSION"), "error": "database check timed out"}),
            ),
        )
            .into_response(),
    }
}

/// Our DID document, for PDSes resolving a `did:web` service DID.
async fn did_document(State(state): State<AppState>) -> Response {
    match state
        .config
        .service_identity
        .as_ref()
        .and_then(|identity| identity.did_document())
    {
        Some(document) => Json(document).into_response(),
        None => XrpcError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "this AppView publishes no DID document (it needs a did:web --service-did and a --service-key)",
        )
        .into_response(),
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let status = state.pool.status();
    metrics::gauge!("skyhose_api_db_pool_size").set(status.size as f64);
    metrics::gauge!("skyhose_api_db_pool_available").set(status.available as f64);
    metrics::gauge!("skyhose_api_db_pool_waiting").set(status.waiting as f64);
    match &state.metrics {
        Some(handle) => {
            handle.run_upkeep();
            handle.render().into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// A query's input is its query string, a procedure's its body: an overlong
/// URI or body is refused before routing, so no handler parses more than
/// this.
async fn limit_request_size(
    State(max_bytes): State<usize>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().len())
        .unwrap_or(0);
    if uri_len > max_bytes {
        return XrpcError::new(
            StatusCode::URI_TOO_LONG,
            "InvalidRequest",
            format!("request URI of {uri_len} bytes is over the {max_bytes}-byte limit"),
        )
        .into_response();
    }
    let body_len = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if body_len.is_some_and(|len| len > max_bytes as u64) {
        return XrpcError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InvalidRequest",
            format!("request body is over the {max_bytes}-byte limit"),
        )
        .into_response();
    }
    next.run(request).await
}

async fn limit_concurrency(
    State(permits): State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    match permits.acquire().await {
        Ok(_permit) => next.run(request).await,
        Err(_) => XrpcError::unavailable("shutting down").into_response(),
    }
}

/// Counts requests by method and status and records latency, labelled by a
/// known NSID only so that arbitrary paths cannot blow up label cardinality.
async fn record_metrics(request: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = match request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
    {
        Some("/xrpc/{nsid}") => {
            let nsid = request.uri().path().trim_start_matches("/xrpc/");
            routes::known_method(nsid)
                .or_else(|| routes::known_procedure(nsid))
                .unwrap_or("unknown")
        }
        Some("/xrpc/_health") => "_health",
        Some("/metrics") => "metrics",
        Some("/") => "dashboard",
        Some("/stats.json") => "stats",
        _ => "unknown",
    };
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "method" => method, "status" => status).increment(1);
    metrics::histogram!(LATENCY, "method" => method).record(started.elapsed().as_secs_f64());
    response
}
