//! An independent reader of the scenario's stream, in its own consumer group,
//! that notes every seq ingest wrote. The index's own figures cannot show a
//! duplicate (replays are harmless to it by design) or an event that never
//! reached the stream, so they are counted here.
//!
//! Redis keeps nothing on disk: when the audit's group disappears, Redis lost
//! its data and a new "epoch" begins. The same seq twice in one epoch is a
//! duplicate; in a later epoch it is a replay from the index's watermark,
//! which is expected after a loss and reported apart.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisError};
use skyhose_index::CancellationToken;

const GROUP: &str = "faults-audit";
const CONSUMER: &str = "audit";

/// What the stream carried over the scenario.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per seq, the epoch (1-based) it was last seen in; 0: never.
    seen: Vec<u16>,
    /// Entries with a seq, counting repeats.
    pub entries: u64,
    /// The same seq more than once within one epoch.
    pub duplicates: u64,
    /// The first duplicated seq, for the error message.
    pub first_duplicate: Option<i64>,
    /// Seqs seen again after Redis lost its data.
    pub replayed: u64,
    /// Times the audit found its group gone (Redis restarted or wiped).
    pub losses: u16,
    /// Entries whose seq was outside 1..=total or unreadable.
    pub strays: u64,
}

impl Tally {
    fn new(total: u64) -> Tally {
        Tally {
            seen: vec![0; total as usize + 1],
            ..Tally::default()
        }
    }

    fn note(&mut self, seq: Option<i64>) {
        let epoch = self.losses + 1;
        let slot = seq
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s > 0)
            .and_then(|s| self.seen.get_mut(s));
        let Some(slot) = slot else {
            self.strays += 1;
            return;
        };
        self.entries += 1;
        if *slot == epoch {
            self.duplicates += 1;
            self.first_duplicate.get_or_insert(seq.unwrap_or_default());
        } else if *slot != 0 {
            self.replayed += 1;
        }
        *slot = epoch;
    }

    /// Seqs in 1..=upto that never reached the stream, as inclusive ranges.
    pub fn missing(&self, upto: i64) -> Vec<(i64, i64)> {
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for seq in 1..=upto {
            if self.seen.get(seq as usize).copied().unwrap_or(0) != 0 {
                continue;
            }
            match ranges.last_mut() {
                Some((_, end)) if *end == seq - 1 => *end = seq,
                _ => ranges.push((seq, seq)),
            }
        }
        ranges
    }
}

/// The running audit; `finish` stops it and hands back the tally.
pub struct Audit {
    stop: CancellationToken,
    highest: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<Tally>,
}

impl Audit {
    /// Creates the audit's group at the start of `stream` (so it sees every
    /// entry) and starts reading.
    pub async fn start(redis_url: &str, stream: &str, total: u64) -> anyhow::Result<Audit> {
        let client = skyhose_connect::redis_client(redis_url).context("the audit's Redis URL")?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting the audit to {redis_url}"))?;
        create_group(&mut conn, stream)
            .await
            .with_context(|| format!("creating the audit group on {stream}"))?;
        let stop = CancellationToken::new();
        let highest = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(read_loop(
            client,
            stream.to_owned(),
            Tally::new(total),
            stop.clone(),
            highest.clone(),
        ));
        Ok(Audit {
            stop,
            highest,
            task,
        })
    }

    /// The highest seq read so far.
    pub fn highest(&self) -> i64 {
        self.highest.load(Ordering::Acquire)
    }

    pub async fn finish(self) -> anyhow::Result<Tally> {
        self.stop.cancel();
        self.task.await.context("the stream audit task failed")
    }
}

async fn create_group(conn: &mut MultiplexedConnection, stream: &str) -> Result<(), RedisError> {
    let created: Result<(), RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

async fn read_loop(
    client: redis::Client,
    stream: String,
    mut tally: Tally,
    stop: CancellationToken,
    highest: Arc<AtomicI64>,
) -> Tally {
    let options = StreamReadOptions::default()
        .group(GROUP, CONSUMER)
        .count(2000)
        .block(200);
    let mut conn: Option<MultiplexedConnection> = None;
    // After a stop is asked, read until the stream has nothing more.
    let mut draining = false;
    loop {
        if stop.is_cancelled() {
            draining = true;
        }
        let redis = match conn.as_mut() {
            Some(c) => c,
            None => match client.get_multiplexed_async_connection().await {
                Ok(c) => conn.insert(c),
                Err(_) if draining => return tally,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let read: Result<StreamReadReply, RedisError> =
            redis.xread_options(&[&stream], &[">"], &options).await;
        match read {
            Ok(reply) => {
                let mut ids = Vec::new();
                for key in reply.keys {
                    for entry in key.ids {
                        let kind: Option<String> = entry.get("type");
                        if kind.as_deref() != Some("info") {
                            let seq = entry
                                .get::<String>("seq")
                                .and_then(|s| s.parse::<i64>().ok());
                            tally.note(seq);
                            if let Some(seq) = seq {
                                highest.fetch_max(seq, Ordering::AcqRel);
                            }
                        }
                        ids.push(entry.id);
                    }
                }
                if ids.is_empty() {
                    if draining {
                        return tally;
                    }
                    continue;
                }
                let acked: Result<(), RedisError> = redis.xack(&stream, GROUP, &ids).await;
                if acked.is_err() {
                    conn = None;
                }
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                // The group is gone with the rest of Redis's data.
                tally.losses = tally.losses.saturating_add(1);
                if create_group(redis, &stream).await.is_err() {
                    conn = None;
                }
            }
            Err(_) if draining => return tally,
            Err(_) => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn repeats_within_an_epoch_are_duplicates_and_across_epochs_replays() {
        let mut t = Tally::new(6);
        for s in [1, 2, 3, 3] {
            t.note(Some(s));
        }
        t.losses = 1;
        for s in [3, 4, 6] {
            t.note(Some(s));
        }
        t.note(Some(99));
        t.note(None);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.first_duplicate, Some(3));
        assert_eq!(t.replayed, 1);
        assert_eq!(t.strays, 2);
        assert_eq!(t.missing(6), vec![(5, 5)]);
        assert_eq!(t.missing(8), vec![(5, 5), (7, 8)]);
    }
}
