//! The stage between verification and the index: verified repos from every
//! worker are gathered into batches of several repos and each batch is
//! loaded in one transaction by `RepoLoader`. A transaction per repo spends
//! most of its time on the fixed cost of a batch (the statements, the
//! commit's WAL flush) for a few hundred rows; a batch of thousands of
//! records spreads it. Each worker waits for the commit of the batch that
//! holds its repo, so a repo is marked done only once its rows are durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use skyhose_index::{RepoLoaded, RepoLoader, RepoState};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::SyncError;

/// How repos are gathered into load transactions.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// A batch is loaded once it holds this many records.
    pub max_records: usize,
    /// A batch is loaded this long after its first repo came, however small.
    pub linger: Duration,
    /// Batches loaded at once, each on its own connection.
    pub loaders: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: 4000,
            linger: Duration::from_millis(20),
            loaders: 1,
        }
    }
}

type Reply = oneshot::Sender<Result<RepoLoaded, String>>;

/// Hands verified repos to the loader tasks.
pub(crate) struct Batcher {
    tx: mpsc::Sender<(RepoState, Reply)>,
}

/// Wall time the loader tasks spent in load transactions, summed.
#[derive(Debug, Default)]
pub(crate) struct LoadClock {
    pub nanos: std::sync::atomic::AtomicU64,
    pub batches: std::sync::atomic::AtomicU64,
}

impl Batcher {
    /// Starts `config.loaders` loader tasks; they end when the batcher is dropped.
    pub fn start(
        config: BatchConfig,
        pool: Pool,
        loader: Arc<RepoLoader>,
        clock: Arc<LoadClock>,
    ) -> Batcher {
        // Enough room that every worker can hand over its repo without
        // waiting for a loader; a repo in the channel is already in memory.
        let (tx, rx) = mpsc::channel(1024);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.loaders.max(1) {
            let (rx, pool, loader, clock) =
                (rx.clone(), pool.clone(), loader.clone(), clock.clone());
            tokio::spawn(async move { load_batches(config, rx, pool, loader, clock).await });
        }
        Batcher { tx }
    }

    /// Loads `state` with the batch it lands in and returns once that
    /// batch has committed.
    pub async fn load(&self, state: RepoState) -> Result<RepoLoaded, SyncError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((state, reply))
            .await
            .map_err(|_| SyncError::Load("the loader tasks have stopped".into()))?;
        answer
            .await
            .map_err(|_| SyncError::Load("the loader task ended before the batch".into()))?
            .map_err(SyncError::Load)
    }
}

async fn load_batches(
    config: BatchConfig,
    rx: Arc<Mutex<mpsc::Receiver<(RepoState, Reply)>>>,
    pool: Pool,
    loader: Arc<RepoLoader>,
    clock: Arc<LoadClock>,
) {
    use std::sync::atomic::Ordering;
    loop {
        let batch = {
            // One loader gathers at a time, so batches fill instead of
            // being split between the loaders.
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut records = first.0.records.len();
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + config.linger;
            while records < config.max_records {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => {
                        records += next.0.records.len();
                        batch.push(next);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            batch
        };
        let (states, replies): (Vec<RepoState>, Vec<Reply>) = batch.into_iter().unzip();
        let started = Instant::now();
        let result = load_one(&pool, &loader, &states).await;
        clock
            .nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        clock.batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("skyhose_backfill_load_batches_total").increment(1);
        match result {
            Ok(loaded) => {
                for (reply, report) in replies.into_iter().zip(loaded) {
                    // A worker that stopped waiting has nothing to record.
                    let _ = reply.send(Ok(report));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

async fn load_one(
    pool: &Pool,
    loader: &RepoLoader,
    states: &[RepoState],
) -> Result<Vec<RepoLoaded>, SyncError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| SyncError::Pool(e.to_string()))?;
    Ok(loader.load(&mut client, states).await?)
}
