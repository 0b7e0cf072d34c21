//! A batch from the stream to its acknowledgement: validation and the
//! hand-over of other workers' repos, the transaction (split until the
//! entries PostgreSQL rejects are alone), dead letters, `XACK`, and the
//! claim of entries other consumers abandoned.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use tracing::warn;

use super::resweep::Resweep;
use super::schedule::{next_backoff, MIN_BACKOFF};
use super::{Held, Worker};
use crate::apply::{apply_batch, is_account_deletion};
use crate::entry::{parse_entry, Event, RawEntry};
use crate::error::IndexError;
use crate::stream::Stream;

/// One batch after validation.
#[derive(Default)]
pub(super) struct Prepared {
    /// Applied: acknowledged by `finish`.
    pub(super) good: Vec<(RawEntry, Event)>,
    pub(super) dead: Vec<(RawEntry, String)>,
    /// Account deletions applied once, acknowledged after their second
    /// sweep.
    pub(super) waiting: Vec<Resweep>,
}

impl Prepared {
    /// Deletions whose second sweep ran with this batch are done with it,
    /// acknowledged or, when the sweep failed for their data, dead-lettered.
    pub(super) fn settle_resweeps(
        &mut self,
        swept: Vec<(RawEntry, Event)>,
        failed: Option<String>,
    ) {
        match failed {
            None => self.good.extend(swept),
            Some(reason) => self
                .dead
                .extend(swept.into_iter().map(|(entry, _)| (entry, reason.clone()))),
        }
    }
}

/// What `apply_isolating` made of a batch, by index into it.
#[derive(Default)]
pub(super) struct Isolated {
    /// Entries PostgreSQL rejects, with the reason.
    failed: Vec<(usize, String)>,
    /// Account deletions applied once, with the transactions they wait for.
    waiting: Vec<(Vec<usize>, Vec<String>)>,
    /// Why the second sweeps carried by the batch failed, if they did.
    pub(super) resweep_failed: Option<String>,
}

impl Worker {
    /// Acknowledges a committed batch; its deletions still waiting for their
    /// second sweep join `held.resweeps`. When Redis fails, the batch is
    /// kept in `held.unfinished`, to be acknowledged first once Redis is
    /// back.
    pub(super) async fn acknowledge(
        &self,
        stream: &Stream<'_>,
        redis: &mut MultiplexedConnection,
        mut prepared: Prepared,
        held: &mut Held,
    ) -> Result<(), IndexError> {
        if let Err(err) = self.finish(stream, redis, &prepared).await {
            held.unfinished = Some(prepared);
            return Err(err);
        }
        held.resweeps.append(&mut prepared.waiting);
        Ok(())
    }

    /// Takes the deletions whose waited-for transactions have all ended (or
    /// Takes over entries abandoned by other consumers; those delivered too
    /// often come back marked for the dead-letter stream. `held` are this
    /// worker's own deletions waiting for their second sweep: idle in the
    /// group, but not abandoned.
    pub(super) async fn claim_stale(
        &self,
        stream: &Stream<'_>,
        redis: &mut MultiplexedConnection,
        claim_idle_ms: u64,
        held: &HashSet<&str>,
    ) -> Result<Vec<RawEntry>, IndexError> {
        let mut stale = stream
            .stale_pending(redis, claim_idle_ms, self.cfg.batch_size)
            .await?;
        stale.retain(|(id, _)| !held.contains(id.as_str()));
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = stale.iter().map(|(id, _)| id.clone()).collect();
        let mut entries = stream.claim(redis, &self.name, claim_idle_ms, &ids).await?;
        self.totals
            .claimed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        metrics::counter!("skyhose_index_claimed_total").increment(entries.len() as u64);
        for entry in &mut entries {
            let previous = stale
                .iter()
                .find(|(id, _)| *id == entry.id)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            // This claim is one more delivery.
            if previous + 1 > self.cfg.max_deliveries as i64 {
                entry
                    .fields
                    .push((TOO_MANY_DELIVERIES.into(), (previous + 1).to_string()));
            }
        }
        Ok(entries)
    }

    /// Validates a batch, keeps the events of this worker's repos with
    /// those other workers handed over (`shards`), hands over the rest and
    /// applies what it kept, with the second sweep of the deletions in
    /// `resweeps` that are ready; `None` when shutdown interrupted it
    /// (nothing acknowledged, the entries stay pending for a later claim).
    pub(super) async fn process(
        &self,
        batch: Vec<RawEntry>,
        resweeps: &mut Vec<Resweep>,
    ) -> Result<Option<Prepared>, IndexError> {
        let mut prepared = Prepared {
            good: self.shards.take(self.index),
            ..Prepared::default()
        };
        let mut others: Vec<Vec<(RawEntry, Event)>> = vec![Vec::new(); self.cfg.workers];
        for mut entry in batch {
            if let Some(pos) = entry
                .fields
                .iter()
                .position(|(k, _)| k == TOO_MANY_DELIVERIES)
            {
                let (_, count) = entry.fields.remove(pos);
                let reason = format!(
                    "entry {} delivered {count} times without being acknowledged",
                    entry.id
                );
                prepared.dead.push((entry, reason));
                continue;
            }
            match parse_entry(&entry) {
                Ok(event) => match self.shards.owner(&event) {
                    Some(owner) if owner != self.index && owner < others.len() => {
                        others[owner].push((entry, event));
                    }
                    _ => prepared.good.push((entry, event)),
                },
                Err(err) => prepared.dead.push((entry, err.to_string())),
            }
        }
        for (owner, events) in others.into_iter().enumerate() {
            let refused = self.shards.hand_over(owner, events);
            prepared.good.extend(refused);
        }
        // A failed check leaves the deletions waiting for the next batch;
        // this one goes ahead.
        let ready = match self.take_ready(resweeps).await {
            Ok(ready) => ready,
            Err(err) if err.is_transient() => {
                warn!(worker = %self.name, error = %err, "checking on account deletions failed; checking again with the next batch");
                Vec::new()
            }
            Err(err) => return Err(err),
        };
        let mut backoff = MIN_BACKOFF;
        loop {
            let events: Vec<(usize, &Event)> = prepared
                .good
                .iter()
                .enumerate()
                .map(|(i, (_, e))| (i, e))
                .collect();
            let ready_events: Vec<&Event> = ready.iter().map(|(_, event)| event).collect();
            let outcome = self.apply_isolating(&events, &ready_events).await;
            match outcome {
                Ok(isolated) => {
                    let sorted = sort_out(
                        std::mem::take(&mut prepared.good),
                        isolated.failed,
                        isolated.waiting,
                    );
                    prepared.good = sorted.applied;
                    prepared.dead.extend(
                        sorted
                            .rejected
                            .into_iter()
                            .map(|((entry, _), reason)| (entry, reason)),
                    );
                    prepared.waiting.extend(
                        sorted
                            .waiting
                            .into_iter()
                            .map(|(entries, running)| Resweep::waiting_for(entries, running)),
                    );
                    prepared.settle_resweeps(ready, isolated.resweep_failed);
                    return Ok(Some(prepared));
                }
                Err(err) if err.is_transient() => {
                    self.totals.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("skyhose_index_retries_total").increment(1);
                    warn!(worker = %self.name, error = %err, "batch transaction failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.cancelled() => {
                            resweeps.push(Resweep::ready(ready));
                            return Ok(None);
                        }
                    }
                    backoff = next_backoff(backoff);
                }
                Err(err) => {
                    resweeps.push(Resweep::ready(ready));
                    return Err(err);
                }
            }
        }
    }

    /// Applies `events` with the second sweep of `resweeps`; when PostgreSQL
    /// rejects the batch for its data, sweeps alone, then splits the batch
    /// until the offending entries are alone and returns them with reasons.
    pub(super) async fn apply_isolating(
        &self,
        events: &[(usize, &Event)],
        resweeps: &[&Event],
    ) -> Result<Isolated, IndexError> {
        let mut isolated = Isolated::default();
        let mut resweeps = resweeps;
        let mut pending: Vec<&[(usize, &Event)]> = vec![events];
        while !pending.is_empty() || !resweeps.is_empty() {
            let part = pending.pop().unwrap_or_default();
            if part.is_empty() && resweeps.is_empty() {
                continue;
            }
            let mut client = self
                .pool
                .get()
                .await
                .map_err(IndexError::pool("getting a connection"))?;
            let only: Vec<&Event> = part.iter().map(|(_, e)| *e).collect();
            let started = Instant::now();
            match apply_batch(&mut client, &only, resweeps, &self.known).await {
                Ok(applied) => {
                    metrics::histogram!("skyhose_index_batch_seconds")
                        .record(started.elapsed().as_secs_f64());
                    resweeps = &[];
                    if let Some(running) = applied.running_at_deletion {
                        let deletions = part
                            .iter()
                            .filter(|(_, event)| is_account_deletion(event))
                            .map(|(index, _)| *index)
                            .collect();
                        isolated.waiting.push((deletions, running));
                    }
                }
                Err(err) if err.is_transient() => return Err(err),
                // Not caused by the entries' data (a schema or SQL problem):
                // dead-lettering would discard good entries, so stop instead.
                Err(err) if !err.is_data_error() => return Err(err),
                Err(err) if !resweeps.is_empty() => {
                    // Whether the sweeps were the cause is told by applying
                    // them alone; the part is tried again without them.
                    if !part.is_empty() {
                        pending.push(part);
                        match apply_batch(&mut client, &[], resweeps, &self.known).await {
                            Ok(_) => {}
                            Err(err) if err.is_transient() || !err.is_data_error() => {
                                return Err(err)
                            }
                            Err(err) => isolated.resweep_failed = Some(err.to_string()),
                        }
                    } else {
                        isolated.resweep_failed = Some(err.to_string());
                    }
                    resweeps = &[];
                }
                Err(err) if part.len() == 1 => {
                    isolated.failed.push((part[0].0, err.to_string()));
                }
                Err(err) => {
                    warn!(worker = %self.name, error = %err, size = part.len(), "batch rejected; splitting it");
                    let (left, right) = part.split_at(part.len() / 2);
                    pending.push(right);
                    pending.push(left);
                }
            }
        }
        Ok(isolated)
    }

    pub(super) async fn finish(
        &self,
        stream: &Stream<'_>,
        redis: &mut MultiplexedConnection,
        prepared: &Prepared,
    ) -> Result<(), IndexError> {
        for (entry, reason) in &prepared.dead {
            warn!(entry = %entry.id, %reason, "dead-lettering entry");
        }
        // Applied and dead-lettered entries alike are done with; events
        // handed to another worker are that worker's to acknowledge.
        let ids: Vec<String> = prepared
            .good
            .iter()
            .map(|(entry, _)| entry)
            .chain(prepared.dead.iter().map(|(entry, _)| entry))
            .map(|entry| entry.id.clone())
            .collect();
        stream
            .finish(redis, &self.cfg.dead_letter_key, &prepared.dead, &ids)
            .await?;
        let applied = prepared.good.len() as u64;
        let dead = prepared.dead.len() as u64;
        self.totals.events.fetch_add(applied, Ordering::Relaxed);
        self.totals.dead.fetch_add(dead, Ordering::Relaxed);
        self.totals.batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("skyhose_index_events_total").increment(applied);
        metrics::counter!("skyhose_index_dead_letters_total").increment(dead);
        metrics::counter!("skyhose_index_batches_total").increment(1);
        Ok(())
    }
}

/// A batch's entries sorted by what the transaction made of each.
#[derive(Debug, PartialEq, Eq)]
struct Sorted<T> {
    applied: Vec<T>,
    /// Entries PostgreSQL rejected, with the reason.
    rejected: Vec<(T, String)>,
    /// Account deletions applied once, with the transactions they wait for.
    waiting: Vec<(Vec<T>, Vec<String>)>,
}

/// Sorts the entries of a batch (`good`) by the outcome `apply_isolating`
/// gave by index into it. An index given twice or out of range takes
/// nothing.
fn sort_out<T>(
    good: Vec<T>,
    failed: Vec<(usize, String)>,
    waiting: Vec<(Vec<usize>, Vec<String>)>,
) -> Sorted<T> {
    let mut slots: Vec<Option<T>> = good.into_iter().map(Some).collect();
    let mut take = |index: usize| slots.get_mut(index).and_then(Option::take);
    let rejected = failed
        .into_iter()
        .filter_map(|(index, reason)| Some((take(index)?, reason)))
        .collect();
    let waiting = waiting
        .into_iter()
        .map(|(indices, running)| (indices.into_iter().filter_map(&mut take).collect(), running))
        .collect();
    Sorted {
        applied: slots.into_iter().flatten().collect(),
        rejected,
        waiting,
    }
}

/// Marker field added in memory (never written) to a claimed entry that has
/// been delivered more than `max_deliveries` times.
const TOO_MANY_DELIVERIES: &str = "\0deliveries";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_entries_and_waiting_deletions_leave_the_applied_ones() {
        let sorted = sort_out(
            vec!["a", "b", "c", "d", "e"],
            vec![(1, "too long".to_owned())],
            vec![(vec![3, 4], vec!["42".to_owned()])],
        );
        assert_eq!(
            sorted,
            Sorted {
                applied: vec!["a", "c"],
                rejected: vec![("b", "too long".to_owned())],
                waiting: vec![(vec!["d", "e"], vec!["42".to_owned()])],
            }
        );
    }

    #[test]
    fn an_index_is_taken_once_and_out_of_range_ones_take_nothing() {
        let sorted = sort_out(
            vec![1, 2],
            vec![
                (0, "x".to_owned()),
                (0, "again".to_owned()),
                (7, "y".to_owned()),
            ],
            vec![(vec![0, 1, 9], Vec::new())],
        );
        assert_eq!(sorted.applied, Vec::<i32>::new());
        assert_eq!(sorted.rejected, vec![(1, "x".to_owned())]);
        assert_eq!(sorted.waiting, vec![(vec![2], Vec::new())]);
    }
}
