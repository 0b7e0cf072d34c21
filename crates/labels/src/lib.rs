//! skyhose-labels: the labeler stage. It reads labelers'
//! `com.atproto.label.subscribeLabels` streams (each labeler's endpoint and
//! `#atproto_label` key from its DID document), checks every label's fields
//! and signature, and keeps in PostgreSQL the latest label per labeler,
//! subject and value with each labeler's cursor; it also records the
//! operator's takedowns. It must not serve HTTP, read the firehose or write
//! the index's other tables: views read its tables through the API.

mod check;
pub mod store;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use skyhose_identity::Resolver;

pub use check::{subscribe_url, Rejected};
pub use stream::LabelerSummary;
pub use tokio_util::sync::CancellationToken;

/// The Bluesky moderation service, the labeler read when none is configured.
pub const BLUESKY_MODERATION: &str = "did:plc:ar7c4by46qjdydhdevvrndac";

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("postgres {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error(transparent)]
    Index(#[from] skyhose_index::IndexError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("a labeler's task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone)]
pub struct LabelsConfig {
    /// The labelers' DIDs.
    pub labelers: Vec<String>,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection up this long resets the backoff.
    pub healthy_reset: Duration,
    /// No frame (a pong included) for this long: reconnect.
    pub stall_timeout: Duration,
    pub ping_interval: Duration,
    pub max_frame_bytes: usize,
    /// Labels stored per transaction at most.
    pub batch_labels: usize,
    /// How often each labeler's progress line is logged.
    pub log_every: Duration,
}

impl LabelsConfig {
    pub fn new(labelers: Vec<String>) -> Self {
        LabelsConfig {
            labelers,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
            healthy_reset: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(30),
            max_frame_bytes: 5 * 1024 * 1024,
            batch_labels: 1000,
            log_every: Duration::from_secs(10),
        }
    }

    pub fn check(&self) -> Result<(), LabelsError> {
        if self.labelers.is_empty() {
            return Err(LabelsError::Config("no labeler to read".into()));
        }
        if let Some(bad) = self
            .labelers
            .iter()
            .find(|did| !skyhose_proto::syntax::is_did(did))
        {
            return Err(LabelsError::Config(format!("labeler {bad:?} is not a DID")));
        }
        Ok(())
    }
}

/// Reads every configured labeler until `shutdown`, each in a task of its
/// own; returns what each did. A labeler that cannot be reached or resolved
/// is retried with backoff, it does not stop the others.
pub async fn run(
    cfg: LabelsConfig,
    pool: Pool,
    resolver: Arc<Resolver>,
    shutdown: CancellationToken,
) -> Result<Vec<LabelerSummary>, LabelsError> {
    cfg.check()?;
    let mut labelers = cfg.labelers.clone();
    labelers.sort();
    labelers.dedup();
    let cfg = Arc::new(cfg);
    let mut tasks = tokio::task::JoinSet::new();
    for did in labelers {
        let (cfg, pool, resolver, shutdown) = (
            cfg.clone(),
            pool.clone(),
            resolver.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            stream::Stream::open(&cfg, &pool, &resolver, &shutdown, &did)
                .await?
                .run()
                .await
        });
    }
    let mut summaries = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(summary)) => summaries.push(summary),
            Ok(Err(e)) => {
                shutdown.cancel();
                failure.get_or_insert(e);
            }
            Err(e) => {
                shutdown.cancel();
                failure.get_or_insert(LabelsError::Task(e.to_string()));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => {
            summaries.sort_by(|a, b| a.did.cmp(&b.did));
            Ok(summaries)
        }
    }
}
