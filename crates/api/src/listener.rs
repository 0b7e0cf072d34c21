//! The API's connections: accepting them, bounding them and closing the ones
//! that only hold a slot.
//!
//! Every open connection costs a file descriptor and a task whether or not it
//! sends requests, so their number is bounded: at the limit the listener stops
//! accepting and new clients wait in the kernel's backlog. So that idle or slow
//! clients cannot keep everyone else waiting there:
//! - a connection has `header_read_timeout` to send the head of each request,
//!   counted from when it connects or its previous response was written, so
//!   the same timer bounds slow headers and idle keep-alive;
//! - once nine in ten slots are taken, connections idle for more than
//!   [`PRESSURE_IDLE`] are closed at once instead of at their timeout;
//! - one client address may hold only so many connections and run only so
//!   many requests at once.
//!
//! Responses go out without Nagle's delay, which would otherwise hold the
//! tail of a large response until the client acknowledges the rest.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ApiConfig;
use crate::error::XrpcError;

pub const OPEN_CONNECTIONS: &str = "skyhose_api_connections_open";
pub const CONNECTIONS_LIMITED: &str = "skyhose_api_connections_at_limit_total";
/// Connections closed by the server, by `reason`: `header_timeout`,
/// `idle_under_pressure`, `per_address_limit`.
pub const CONNECTIONS_CLOSED: &str = "skyhose_api_connections_closed_total";
/// Requests refused with 429 because their address had too many running.
pub const REQUESTS_LIMITED: &str = "skyhose_api_requests_limited_total";

/// Under pressure, a connection idle this long is closed to make room: long
/// enough for a client that just connected to send its request.
pub const PRESSURE_IDLE: Duration = Duration::from_secs(1);
/// How often a listener with every slot taken asks idle connections again.
const PRESSURE_RETRY: Duration = Duration::from_millis(250);

/// Registers the listener's counters at zero, so they are exported before
/// anything happens.
pub(crate) fn describe_metrics() {
    metrics::gauge!(OPEN_CONNECTIONS).set(0.0);
    metrics::counter!(CONNECTIONS_LIMITED).increment(0);
    for reason in ["header_timeout", "idle_under_pressure", "per_address_limit"] {
        metrics::counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(0);
    }
    metrics::counter!(REQUESTS_LIMITED).increment(0);
}

/// The limits of [`serve`], taken from [`ApiConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_requests_per_address: usize,
    pub header_read_timeout: Duration,
}

impl Limits {
    pub fn from_config(config: &ApiConfig) -> Self {
        Limits {
            max_connections: config.max_connections.max(1),
            max_connections_per_address: config.max_connections_per_address.max(1),
            max_requests_per_address: config.max_requests_per_address.max(1),
            header_read_timeout: config.header_read_timeout,
        }
    }
}

/// Serves `app` on `listener` until `token` is cancelled; then stops
/// accepting, lets each connection finish the request it is in and waits for
/// all of them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    token: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (pressure, _) = watch::channel(0u64);
    let addresses = Addresses::default();
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = token.cancelled() => break,
            permit = acquire(&permits, &pressure) => permit,
        };
        let (stream, addr) = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors or a connection reset before it was
                    // accepted: neither ends the server.
                    tracing::warn!(error = %err, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = addresses.enter(addr.ip(), limits.max_connections_per_address) else {
            metrics::counter!(CONNECTIONS_CLOSED, "reason" => "per_address_limit").increment(1);
            tracing::debug!(%addr, "client address at its connection limit; closed");
            continue;
        };
        if permits.available_permits() < limits.max_connections / 10 {
            pressure.send_modify(|epoch| *epoch += 1);
        }
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%addr, error = %err, "could not turn off Nagle's algorithm");
        }
        connections.spawn(serve_connection(
            stream,
            addr,
            app.clone(),
            Held {
                _permit: permit,
                slot,
            },
            limits,
            pressure.subscribe(),
            token.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A connection slot; while none is free, idle connections are asked to close
/// every [`PRESSURE_RETRY`].
async fn acquire(permits: &Arc<Semaphore>, pressure: &watch::Sender<u64>) -> OwnedSemaphorePermit {
    let mut warned = false;
    loop {
        // The semaphore is never closed, so waiting for a permit cannot fail.
        if let Ok(Ok(permit)) =
            tokio::time::timeout(PRESSURE_RETRY, permits.clone().acquire_owned()).await
        {
            return permit;
        }
        if !warned {
            metrics::counter!(CONNECTIONS_LIMITED).increment(1);
            tracing::warn!("API connection limit reached; closing idle connections");
            warned = true;
        }
        pressure.send_modify(|epoch| *epoch += 1);
    }
}

/// What an open connection holds until it closes.
struct Held {
    _permit: OwnedSemaphorePermit,
    slot: AddressSlot,
}

async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    app: Router,
    held: Held,
    limits: Limits,
    mut pressure: watch::Receiver<u64>,
    token: CancellationToken,
) {
    metrics::gauge!(OPEN_CONNECTIONS).increment(1.0);
    let activity = Arc::new(Activity::new());
    let requests = held.slot.shared.clone();
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = service_activity.begin();
        let app = app.clone();
        let admitted = requests.begin_request(limits.max_requests_per_address);
        async move {
            let response = match admitted {
                Some(_running) => match app.oneshot(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => {
                    metrics::counter!(REQUESTS_LIMITED).increment(1);
                    XrpcError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "RateLimitExceeded",
                        "too many requests at once from this address",
                    )
                    .into_response()
                }
            };
            drop(busy);
            Ok::<Response, std::convert::Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = false;
    let mut pressure_open = true;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    if err.is_timeout() {
                        metrics::counter!(CONNECTIONS_CLOSED, "reason" => "header_timeout").increment(1);
                    }
                    tracing::debug!(%addr, error = %err, "API connection ended");
                }
                break;
            }
            _ = token.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            changed = pressure.changed(), if !closing && pressure_open => {
                if changed.is_err() {
                    pressure_open = false;
                } else if activity.idle_for() >= PRESSURE_IDLE {
                    metrics::counter!(CONNECTIONS_CLOSED, "reason" => "idle_under_pressure").increment(1);
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
    drop(held);
    metrics::gauge!(OPEN_CONNECTIONS).decrement(1.0);
}

/// Milliseconds since the first use, for times shared through atomics.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Whether a connection is running a request, and since when it is not.
struct Activity {
    running: AtomicUsize,
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            running: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.running.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn idle_for(&self) -> Duration {
        if self.running.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(now_ms().saturating_sub(self.idle_since_ms.load(Ordering::Acquire)))
    }
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(now_ms(), Ordering::Release);
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connections and running requests of each client address.
#[derive(Default, Clone)]
struct Addresses(Arc<Mutex<HashMap<IpAddr, Arc<PerAddress>>>>);

#[derive(Default)]
struct PerAddress {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

impl Addresses {
    /// A slot for one more connection from `ip`, or `None` at the limit.
    fn enter(&self, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let shared = map.entry(ip).or_default().clone();
        if shared.connections.load(Ordering::Acquire) >= limit {
            return None;
        }
        shared.connections.fetch_add(1, Ordering::AcqRel);
        Some(AddressSlot {
            addresses: self.clone(),
            ip,
            shared,
        })
    }
}

struct AddressSlot {
    addresses: Addresses,
    ip: IpAddr,
    shared: Arc<PerAddress>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self
            .addresses
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.shared.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            map.remove(&self.ip);
        }
    }
}

impl PerAddress {
    fn begin_request(self: &Arc<Self>, limit: usize) -> Option<RunningRequest> {
        if self.requests.fetch_add(1, Ordering::AcqRel) >= limit {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(RunningRequest(self.clone()))
    }
}

struct RunningRequest(Arc<PerAddress>);

impl Drop for RunningRequest {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}
