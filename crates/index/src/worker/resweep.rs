//! Account deletions between their first sweep and their second: the
//! worker keeps applying batches meanwhile, checks with each whether the
//! transactions running at a deletion's commit have ended, and sweeps
//! again with the first batch after they have (or alone, when the stream
//! is idle or the worker stops). See `apply` for why.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tracing::warn;

use super::batch::Prepared;
use super::{connect, Worker};
use crate::apply::{running_count, wait_for_transactions, CONCURRENT_WAIT_LIMIT};
use crate::entry::{Event, RawEntry};
use crate::error::IndexError;
use crate::stream::Stream;

/// How long a stopping worker waits for its deletions' second sweeps
/// before it leaves their entries pending for another consumer.
const RESWEEP_AT_STOP: Duration = Duration::from_secs(10);

/// Account deletions committed and swept once, waiting for the
/// transactions that were running at their commit to end before they
/// sweep again and their entries are acknowledged. Their entries stay
/// pending, so the watermark stays below them and a crash leaves them to
/// be claimed and applied again.
pub(super) struct Resweep {
    pub(super) entries: Vec<(RawEntry, Event)>,
    pub(super) running: Vec<String>,
    since: Instant,
}

impl Resweep {
    pub(super) fn waiting_for(entries: Vec<(RawEntry, Event)>, running: Vec<String>) -> Self {
        Resweep {
            entries,
            running,
            since: Instant::now(),
        }
    }

    /// Deletions found ready whose second sweep did not happen: ready still.
    pub(super) fn ready(entries: Vec<(RawEntry, Event)>) -> Self {
        Resweep::waiting_for(entries, Vec::new())
    }
}

/// The entry ids of the deletions waiting for their second sweep: idle in
/// the group, but not abandoned, so not to be claimed.
pub(super) fn held_ids(resweeps: &[Resweep]) -> HashSet<&str> {
    resweeps
        .iter()
        .flat_map(|r| r.entries.iter().map(|(entry, _)| entry.id.as_str()))
        .collect()
}

impl Worker {
    /// Takes the deletions whose waited-for transactions have all ended (or
    /// that waited longer than any batch lasts).
    pub(super) async fn take_ready(
        &self,
        resweeps: &mut Vec<Resweep>,
    ) -> Result<Vec<(RawEntry, Event)>, IndexError> {
        let mut ready = Vec::new();
        if resweeps.is_empty() {
            return Ok(ready);
        }
        let client = self
            .pool
            .get()
            .await
            .map_err(IndexError::pool("getting a connection"))?;
        // Decided for all before any is taken, so that a failed check
        // leaves every deletion where it was.
        let mut is_ready = Vec::with_capacity(resweeps.len());
        for resweep in resweeps.iter() {
            let overdue = resweep.since.elapsed() > CONCURRENT_WAIT_LIMIT;
            if overdue {
                warn!(
                    worker = %self.name,
                    "transactions running since an account deletion are still running; sweeping again without them"
                );
            }
            is_ready.push(overdue || running_count(&client, &resweep.running).await? == 0);
        }
        for (resweep, is_ready) in std::mem::take(resweeps).into_iter().zip(is_ready) {
            if is_ready {
                ready.extend(resweep.entries);
            } else {
                resweeps.push(resweep);
            }
        }
        Ok(ready)
    }

    /// The second sweep of the deletions that are ready, in a transaction
    /// of its own, when no batch comes to carry it.
    pub(super) async fn resweep_alone(
        &self,
        resweeps: &mut Vec<Resweep>,
    ) -> Result<Option<Prepared>, IndexError> {
        let ready = self.take_ready(resweeps).await?;
        if ready.is_empty() {
            return Ok(None);
        }
        let events: Vec<&Event> = ready.iter().map(|(_, event)| event).collect();
        match self.apply_isolating(&[], &events).await {
            Ok(isolated) => {
                let mut prepared = Prepared::default();
                prepared.settle_resweeps(ready, isolated.resweep_failed);
                Ok(Some(prepared))
            }
            Err(err) => {
                resweeps.push(Resweep::ready(ready));
                Err(err)
            }
        }
    }

    /// A stopping worker finishes its deletions' second sweeps if the
    /// transactions they wait for end soon; otherwise their entries stay
    /// pending and another consumer applies them again.
    pub(super) async fn resweep_at_stop(
        &self,
        stream: &Stream<'_>,
        conn: Option<MultiplexedConnection>,
        mut resweeps: Vec<Resweep>,
    ) {
        let finished = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(IndexError::pool("getting a connection"))?;
            for resweep in &mut resweeps {
                if wait_for_transactions(&client, &resweep.running, RESWEEP_AT_STOP).await? {
                    resweep.running.clear();
                }
            }
            drop(client);
            let mut redis = match conn {
                Some(redis) => redis,
                None => connect(&self.redis).await?,
            };
            while let Some(prepared) = self.resweep_alone(&mut resweeps).await? {
                self.finish(stream, &mut redis, &prepared).await?;
            }
            Ok::<usize, IndexError>(resweeps.iter().map(|r| r.entries.len()).sum())
        };
        match finished.await {
            Ok(0) => {}
            Ok(left) => {
                warn!(worker = %self.name, entries = left, "account deletions still waiting at stop are left pending for another consumer")
            }
            Err(err) => {
                warn!(worker = %self.name, error = %err, "account deletions still waiting at stop are left pending for another consumer")
            }
        }
    }
}
