//! skyhose-api: the XRPC API over the PostgreSQL index — parameter
//! parsing, batched hydration into lexicon views, service-auth viewers,
//! health and metrics — and the viewers' private state (mutes, bookmarks,
//! notification state and preferences). It reads the index and never writes
//! the index's tables; it owns and writes only the private-state tables
//! (`private_*`, migration 0019), each row on behalf of the authenticated
//! account that the row belongs to. It does not own the schema (skyhose-index
//! applies every migration).

mod auth;
mod compact;
mod config;
mod cursor;
mod dashboard;
mod db;
mod error;
mod http;
mod listener;
mod params;
mod routes;
mod service;
mod views;

use std::sync::Arc;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;

pub use auth::{AuthError, AuthOptions, ServiceAuth};
pub use config::{default_pool_size, ApiConfig};
pub use db::{connect_pool, PoolError};
pub use error::XrpcError;
pub use http::{
    api_routes, install_metrics_recorder, router, serve, serve_on, serve_router, with_layers,
};
pub use listener::Limits;
pub use params::exercise_query;
pub use routes::{METHODS, PROCEDURES};
pub use service::ServiceIdentity;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub(crate) pool: Pool,
    pub(crate) config: Arc<ApiConfig>,
    pub(crate) auth: Arc<auth::ServiceAuth>,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// Resolves feed generators' DIDs; shared with `auth`, which resolves
    /// viewers' keys through it.
    pub(crate) resolver: Arc<skyhose_identity::Resolver>,
    /// Asks feed generators for skeletons, under the resolver's guard.
    pub(crate) feed_client: Arc<skyhose_identity::Fetcher>,
}

impl AppState {
    /// `metrics`: the process's Prometheus handle, rendered at `/metrics`.
    pub fn new(pool: Pool, config: ApiConfig, metrics: Option<PrometheusHandle>) -> Self {
        let mut identity = skyhose_identity::IdentityConfig::new(config.plc_url.clone());
        identity.allow_loopback = config.allow_loopback_identity;
        let feed_client = skyhose_identity::Fetcher::new(identity.policy(), config.feed_timeout);
        let resolver = Arc::new(skyhose_identity::Resolver::new(identity));
        let auth = auth::ServiceAuth::with_resolver(
            config.service_did.clone(),
            resolver.clone(),
            AuthOptions::default(),
        );
        AppState {
            pool,
            config: Arc::new(config),
            auth: Arc::new(auth),
            metrics,
            resolver,
            feed_client: Arc::new(feed_client),
        }
    }
}
