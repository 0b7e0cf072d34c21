use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use skyhose_api::{ApiConfig, AppState};
use skyhose_index::CancellationToken;

use super::index::{cancel_on_signal, parse_duration, DEFAULT_DATABASE_URL};

/// Options of `skyhose serve`, shared with `run`/`demo`.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Address the XRPC API listens on; loopback unless you mean otherwise.
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Our DID: the audience viewers' service-auth tokens must name (bare,
    /// or with `#bsky_appview` / `#bsky_notif`), and the DID PDSes are
    /// configured with (`PDS_BSKY_APP_VIEW_DID`) to route their users to us.
    #[arg(long, env = "SERVICE_DID", default_value = "did:web:localhost")]
    pub service_did: String,
    /// File with our signing key (hex secp256k1 secret, mode 0600), created
    /// on first start. With a did:web --service-did, the DID document at
    /// /.well-known/did.json names its public half; without this flag no
    /// document is published.
    #[arg(long, env = "SERVICE_KEY_FILE", value_name = "FILE")]
    pub service_key: Option<std::path::PathBuf>,
    /// URL PDSes reach this API at, named in our DID document (default:
    /// https://<host> of a did:web --service-did).
    #[arg(long, env = "PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub labelers: super::labels::LabelerArgs,
    /// A labeler whose !takedown and !suspend labels hide their subject
    /// from every view, as an operator takedown does; repeat for several.
    /// None by default.
    #[arg(
        long = "takedown-labeler",
        env = "SKYHOSE_TAKEDOWN_LABELERS",
        value_name = "DID",
        value_delimiter = ',',
        value_parser = super::labels::did
    )]
    pub takedown_labelers: Vec<String>,
    /// Image URL pattern; `{preset}`, `{did}` and `{cid}` are replaced.
    #[arg(
        long,
        env = "IMAGE_URL_PATTERN",
        default_value = "https://cdn.bsky.app/img/{preset}/plain/{did}/{cid}@jpeg"
    )]
    pub image_url_pattern: String,
    /// PostgreSQL connections held by the API (default: twice this
    /// machine's cores, at least 4; more than the database server's cores
    /// only queue inside it).
    #[arg(long, env = "API_POOL_SIZE", default_value_t = skyhose_api::default_pool_size())]
    pub api_pool_size: usize,
    /// Queries running longer than this are cancelled (e.g. 5s, 500ms).
    #[arg(long, env = "STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub statement_timeout: Duration,
    /// Requests handled at once; more wait their turn.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Client connections open at once (idle keep-alive ones count); more
    /// wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections one client address may hold open; more are closed at once.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Requests one client address may run at once; more are answered 429.
    #[arg(long, env = "MAX_REQUESTS_PER_ADDRESS", default_value_t = 64)]
    pub max_requests_per_address: usize,
    /// Time a connection has to send a request's head, from connecting or
    /// from its previous response (also the longest keep-alive idle time).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Requests unanswered after this long, their wait for a turn included,
    /// are answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long getFeed waits for a feed generator's skeleton before
    /// answering 502 UpstreamFailure.
    #[arg(long, env = "FEED_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub feed_timeout: Duration,
}

impl ApiArgs {
    /// The API's configuration; reads (or creates) the service key.
    pub fn config(&self, database_url: &str) -> anyhow::Result<ApiConfig> {
        let mut config = ApiConfig::new(database_url);
        config.listen = self.listen;
        config.service_did = self.service_did.clone();
        config.service_identity = self.service_identity()?;
        config.plc_url = self.identity.plc_url.clone();
        config.allow_loopback_identity = self.identity.allow_loopback_identity;
        config.image_url_pattern = self.image_url_pattern.clone();
        config.pool_size = self.api_pool_size;
        config.statement_timeout = self.statement_timeout;
        config.max_concurrent_requests = self.max_concurrent_requests;
        config.max_connections = self.max_connections;
        config.max_connections_per_address = self.max_connections_per_address;
        config.max_requests_per_address = self.max_requests_per_address;
        config.header_read_timeout = self.header_read_timeout;
        config.request_timeout = self.request_timeout;
        config.labelers = self.labelers.labelers.clone();
        config.takedown_labelers = self.takedown_labelers.clone();
        config.feed_timeout = self.feed_timeout;
        Ok(config)
    }

    fn service_identity(&self) -> anyhow::Result<Option<skyhose_api::ServiceIdentity>> {
        let Some(path) = &self.service_key else {
            return Ok(None);
        };
        let endpoint = match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => crate::service_key::default_endpoint(&self.service_did).ok_or_else(|| {
                anyhow::anyhow!(
                    "--service-key needs --public-url: the service DID {} does not name a host",
                    self.service_did
                )
            })?,
        };
        let (key, created) = crate::service_key::load_or_create(path)?;
        let public = key.public_key();
        if created {
            tracing::info!(
                path = %path.display(),
                public_key = %public.to_did_key(),
                "created a new service key"
            );
        }
        Ok(Some(skyhose_api::ServiceIdentity {
            did: self.service_did.clone(),
            key: public,
            endpoint,
        }))
    }
}

/// Options of `skyhose serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// PostgreSQL database holding the index (created and migrated if needed).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = crate::config::check::postgres_url)]
    pub database_url: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    skyhose_index::ensure_database(&args.database_url).await?;
    let migrate_pool = skyhose_index::connect_pool(&args.database_url, 1)?;
    skyhose_index::migrate(&migrate_pool).await?;
    drop(migrate_pool);
    let metrics = skyhose_api::install_metrics_recorder().map_err(anyhow::Error::msg)?;
    let config = args.api.config(&args.database_url)?;
    let pool = skyhose_api::connect_pool(&config)?;
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());
    skyhose_api::serve(AppState::new(pool, config, Some(metrics)), token).await?;
    tracing::info!("API stopped");
    Ok(())
}

/// Where identities (DID documents, handles) are resolved from: viewers'
/// tokens in the API, accounts' handles in the index.
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityArgs {
    /// PLC directory for did:plc documents.
    #[arg(long, env = "PLC_URL", default_value = "https://plc.directory")]
    pub plc_url: String,
    /// Ask this base URL's /.well-known/atproto-did, with the handle as
    /// Host, for every handle instead of DNS and the handle's own host (for
    /// networks without public DNS).
    #[arg(long, env = "HANDLE_RESOLVER")]
    pub handle_resolver: Option<String>,
    /// For tests only: allow plain-HTTP identity lookups on loopback
    /// (did:web:127.0.0.1%3APORT, a PLC directory or handle resolver on
    /// 127.0.0.1). Never in production: it lets any token's issuer aim the
    /// service at its own loopback ports.
    #[arg(long, env = "ALLOW_LOOPBACK_IDENTITY")]
    pub allow_loopback_identity: bool,
}

impl IdentityArgs {
    pub fn config(&self) -> anyhow::Result<skyhose_identity::IdentityConfig> {
        let mut config = skyhose_identity::IdentityConfig::new(self.plc_url.clone());
        config.handle_resolver = self.handle_resolver.clone();
        config.allow_loopback = self.allow_loopback_identity;
        config.check()?;
        Ok(config)
    }
}
