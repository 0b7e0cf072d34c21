//! The Redis side of a worker: reading, claiming, acknowledging and
//! dead-lettering stream entries, and the group's progress.

use std::cmp::Ordering;

use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::entry::RawEntry;
use crate::error::IndexError;

mod reader;
pub use reader::{entries_of_reply, EntryReader};

fn text(value: &Value) -> Option<String> {
    match value {
        // Entries are UTF-8 JSON; the lossy path only runs for the odd one
        // that is not, which then fails validation with its bytes replaced.
        Value::BulkString(bytes) => Some(match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        }),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

fn bad_reply(context: &str, value: &Value) -> IndexError {
    IndexError::RedisReply {
        context: context.to_owned(),
        detail: format!("{value:?}"),
    }
}

/// `[id, [field, value, ...]]`; `None` for a claimed entry that no longer exists.
fn parse_entry(value: &Value, context: &str) -> Result<Option<RawEntry>, IndexError> {
    let Value::Array(parts) = value else {
        return match value {
            Value::Nil => Ok(None),
            other => Err(bad_reply(context, other)),
        };
    };
    let id = parts
        .first()
        .and_then(text)
        .ok_or_else(|| bad_reply(context, value))?;
    let fields = match parts.get(1) {
        Some(Value::Array(items)) => items
            .chunks(2)
            .map(|pair| match pair {
                [key, val] => Ok((text(key).unwrap_or_default(), text(val).unwrap_or_default())),
                _ => Err(bad_reply(context, value)),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Nil) | None => return Ok(None),
        Some(other) => return Err(bad_reply(context, other)),
    };
    Ok(Some(RawEntry { id, fields }))
}

fn parse_entry_list(value: &Value, context: &str) -> Result<Vec<RawEntry>, IndexError> {
    match value {
        Value::Array(items) => {
            let mut entries = Vec::with_capacity(items.len());
            for item in items {
                if let Some(entry) = parse_entry(item, context)? {
                    entries.push(entry);
                }
            }
            Ok(entries)
        }
        Value::Nil => Ok(Vec::new()),
        other => Err(bad_reply(context, other)),
    }
}

/// A whole `XREADGROUP` reply read through the `redis` crate, as the
/// worker's reads were before `reader`: the crate's reply values, then
/// entries. Kept for the A/B benchmark (`benches/resp.rs`).
pub fn entries_of_reply_with_redis(reply: &[u8]) -> Result<Vec<RawEntry>, IndexError> {
    const CONTEXT: &str = "XREADGROUP";
    let value = redis::parse_redis_value(reply).map_err(IndexError::redis(CONTEXT))?;
    let streams = match &value {
        Value::Array(streams) => streams,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(bad_reply(CONTEXT, other)),
    };
    let mut entries = Vec::new();
    for stream in streams {
        match stream {
            Value::Array(parts) if parts.len() == 2 => {
                if let Some(list) = parts.get(1) {
                    entries.extend(parse_entry_list(list, CONTEXT)?);
                }
            }
            other => return Err(bad_reply(CONTEXT, other)),
        }
    }
    Ok(entries)
}

/// Stream ids compare as (milliseconds, sequence) pairs.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    let split = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    split(a).cmp(&split(b))
}

pub struct Stream<'a> {
    pub key: &'a str,
    pub group: &'a str,
}

impl Stream<'_> {
    /// Creates the consumer group at the start of the stream unless it exists.
    pub async fn ensure_group(&self, conn: &mut MultiplexedConnection) -> Result<(), IndexError> {
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key)
            .arg(self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(IndexError::Redis {
                context: format!("creating group {} on {}", self.group, self.key),
                source: err,
            }),
        }
    }

    pub async fn read_new(
        &self,
        reader: &mut EntryReader,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<RawEntry>, IndexError> {
        reader
            .read_group(self.key, self.group, consumer, count, Some(block_ms), ">")
            .await
    }

    /// Entries delivered to `consumer` earlier and never acknowledged: what a
    /// worker of the same name held when its process stopped. Reading them
    /// back at start beats waiting for them to go idle long enough to claim.
    pub async fn read_own_pending(
        &self,
        reader: &mut EntryReader,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, IndexError> {
        reader
            .read_group(self.key, self.group, consumer, count, None, "0")
            .await
    }

    /// Entries idle for at least `min_idle_ms` in any consumer, with their
    /// delivery counts so far.
    pub async fn stale_pending(
        &self,
        conn: &mut MultiplexedConnection,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<Vec<(String, i64)>, IndexError> {
        let reply: Value = redis::cmd("XPENDING")
            .arg(self.key)
            .arg(self.group)
            .arg("IDLE")
            .arg(min_idle_ms)
            .arg("-")
            .arg("+")
            .arg(count)
            .query_async(conn)
            .await
            .map_err(IndexError::redis(format!("XPENDING on {}", self.key)))?;
        let Value::Array(items) = &reply else {
            return Err(bad_reply("XPENDING", &reply));
        };
        items
            .iter()
            .map(|item| match item {
                Value::Array(parts) if parts.len() == 4 => {
                    let id = text(&parts[0]).ok_or_else(|| bad_reply("XPENDING", item))?;
                    let deliveries = int(&parts[3]).ok_or_else(|| bad_reply("XPENDING", item))?;
                    Ok((id, deliveries))
                }
                other => Err(bad_reply("XPENDING", other)),
            })
            .collect()
    }

    /// Takes over `ids` (still idle for `min_idle_ms`) for `consumer`.
    pub async fn claim(
        &self,
        conn: &mut MultiplexedConnection,
        consumer: &str,
        min_idle_ms: u64,
        ids: &[String],
    ) -> Result<Vec<RawEntry>, IndexError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reply: Value = redis::cmd("XCLAIM")
            .arg(self.key)
            .arg(self.group)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(ids)
            .query_async(conn)
            .await
            .map_err(IndexError::redis(format!("XCLAIM on {}", self.key)))?;
        parse_entry_list(&reply, "XCLAIM")
    }

    /// Copies `dead` entries to `dead_key` with the reason, then acknowledges
    /// every id in `ack`, in one round trip.
    pub async fn finish(
        &self,
        conn: &mut MultiplexedConnection,
        dead_key: &str,
        dead: &[(RawEntry, String)],
        ack: &[String],
    ) -> Result<(), IndexError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (entry, error) in dead {
            let cmd = pipe.cmd("XADD").arg(dead_key).arg("*");
            for (field, value) in &entry.fields {
                cmd.arg(field).arg(value);
            }
            cmd.arg("error")
                .arg(error)
                .arg("original_id")
                .arg(&entry.id)
                .ignore();
        }
        if !ack.is_empty() {
            pipe.cmd("XACK")
                .arg(self.key)
                .arg(self.group)
                .arg(ack)
                .ignore();
        }
        pipe.query_async::<()>(conn)
            .await
            .map_err(IndexError::redis(format!(
                "acknowledging entries of {}",
                self.key
            )))
    }

    /// `(pending, lag)`: entries delivered but not acknowledged, and entries
    /// not delivered yet (Redis 7 reports the lag; `None` when it cannot).
    pub async fn backlog(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(i64, Option<i64>), IndexError> {
        let (pending, _, lag) = self.group_info(conn).await?;
        Ok((pending, lag))
    }

    /// `(pending count, last delivered id)` of the group.
    async fn group_state(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(i64, String), IndexError> {
        let (pending, last, _) = self.group_info(conn).await?;
        Ok((pending, last))
    }

    async fn group_info(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(i64, String, Option<i64>), IndexError> {
        let missing = || IndexError::GroupMissing {
            context: format!("XINFO GROUPS {}", self.key),
            key: self.key.to_owned(),
            group: self.group.to_owned(),
        };
        let reply: Value = match redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(self.key)
            .query_async(conn)
            .await
        {
            Ok(reply) => reply,
            // The whole stream is gone, not only the group.
            Err(e) if e.detail() == Some("no such key") => return Err(missing()),
            Err(e) => return Err(IndexError::redis(format!("XINFO GROUPS {}", self.key))(e)),
        };
        let groups: Vec<Vec<(String, Value)>> = match &reply {
            Value::Array(groups) => groups
                .iter()
                .map(|group| match group {
                    Value::Array(flat) => flat
                        .chunks(2)
                        .filter_map(|pair| match pair {
                            [k, v] => text(k).map(|k| (k, v.clone())),
                            _ => None,
                        })
                        .collect(),
                    Value::Map(pairs) => pairs
                        .iter()
                        .filter_map(|(k, v)| text(k).map(|k| (k, v.clone())))
                        .collect(),
                    _ => Vec::new(),
                })
                .collect(),
            other => return Err(bad_reply("XINFO GROUPS", other)),
        };
        for group in groups {
            let field = |name: &str| group.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            if field("name").and_then(text).as_deref() == Some(self.group) {
                let pending = field("pending").and_then(int).unwrap_or(0);
                let last = field("last-delivered-id")
                    .and_then(text)
                    .unwrap_or_else(|| "0-0".into());
                let lag = field("lag").and_then(int);
                return Ok((pending, last, lag));
            }
        }
        Err(missing())
    }

    async fn range(
        &self,
        conn: &mut MultiplexedConnection,
        start: &str,
        end: &str,
        rev: bool,
    ) -> Result<Option<RawEntry>, IndexError> {
        let reply: Value = redis::cmd(if rev { "XREVRANGE" } else { "XRANGE" })
            .arg(self.key)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .map_err(IndexError::redis(format!("XRANGE on {}", self.key)))?;
        Ok(parse_entry_list(&reply, "XRANGE")?.into_iter().next())
    }

    /// True when every entry has been delivered and acknowledged.
    pub async fn drained(&self, conn: &mut MultiplexedConnection) -> Result<bool, IndexError> {
        let (pending, last) = self.group_state(conn).await?;
        if pending > 0 {
            return Ok(false);
        }
        Ok(self
            .range(conn, &format!("({last}"), "+", false)
            .await?
            .is_none())
    }

    /// A seq W such that every entry with seq <= W has been acknowledged
    /// (hence committed or dead-lettered). `None` when it cannot be told.
    pub async fn safe_seq(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Option<i64>, IndexError> {
        // Read the delivery point before the pending list: entries delivered
        // in between are after that point, so they cannot be missed.
        let (_, last_delivered) = self.group_state(conn).await?;
        let summary: Value = redis::cmd("XPENDING")
            .arg(self.key)
            .arg(self.group)
            .query_async(conn)
            .await
            .map_err(IndexError::redis(format!("XPENDING on {}", self.key)))?;
        let oldest_pending = match &summary {
            Value::Array(parts) => parts.get(1).and_then(text),
            other => return Err(bad_reply("XPENDING", other)),
        };
        let next_undelivered = self
            .range(conn, &format!("({last_delivered}"), "+", false)
            .await?
            .map(|entry| entry.id);
        let first_open = match (oldest_pending, next_undelivered) {
            (Some(a), Some(b)) => Some(if compare_ids(&a, &b).is_le() { a } else { b }),
            (a, b) => a.or(b),
        };
        let seq_of = |entry: Option<RawEntry>| {
            entry.and_then(|e| e.field("seq").and_then(|s| s.parse::<i64>().ok()))
        };
        match first_open {
            Some(id) => Ok(seq_of(self.range(conn, &id, &id, false).await?).map(|seq| seq - 1)),
            None => Ok(seq_of(self.range(conn, "+", "-", true).await?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_numerically() {
        assert_eq!(compare_ids("10-0", "9-5"), Ordering::Greater);
        assert_eq!(compare_ids("5-10", "5-9"), Ordering::Greater);
        assert_eq!(compare_ids("5-1", "5-1"), Ordering::Equal);
    }

    #[test]
    fn both_readers_of_a_reply_agree() {
        let reply = b"*1\r\n*2\r\n$6\r\nevents\r\n*3\r\n\
            *2\r\n$3\r\n1-1\r\n*4\r\n$4\r\ntype\r\n$6\r\ncommit\r\n$4\r\ndata\r\n$7\r\n{\"a\":1}\r\n\
            *2\r\n$3\r\n1-2\r\n*-1\r\n\
            *2\r\n$3\r\n1-3\r\n*2\r\n$3\r\nseq\r\n$2\r\n42\r\n";
        let hand_written = entries_of_reply(reply).expect("valid reply");
        let through_redis = entries_of_reply_with_redis(reply).expect("valid reply");
        assert_eq!(hand_written.len(), 2);
        assert_eq!(hand_written, through_redis);
        assert_eq!(entries_of_reply(b"*-1\r\n"), Ok(Vec::new()));
        assert!(entries_of_reply_with_redis(b"*-1\r\n")
            .expect("nil")
            .is_empty());
    }
}
