//! The Redis side: the stream, its cursor key, the consumer group, safe
//! trimming and the status key.

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};
use redis::{AsyncCommands, RedisError, Value as RedisValue};

use crate::config::IngestConfig;
use crate::entry::StreamEntry;

#[derive(Clone)]
pub struct Sink {
    client: redis::Client,
    conn: MultiplexedConnection,
    stream_key: String,
    cursor_key: String,
    status_key: String,
    group: String,
}

/// What Redis says about where to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisResume {
    pub cursor: Option<i64>,
    pub last_entry_seq: Option<i64>,
    pub stream_exists: bool,
}

/// After a trim: how long the stream is and how far behind the slowest group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimOutcome {
    pub length: u64,
    pub max_group_lag: Option<u64>,
}

fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Sink {
    pub async fn connect(cfg: &IngestConfig) -> Result<Self, RedisError> {
        let client = skyhose_connect::redis_client(&cfg.redis_url).map_err(|e| {
            RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "unusable Redis URL",
                e.to_string(),
            ))
        })?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self {
            client,
            conn,
            stream_key: cfg.stream_key.clone(),
            cursor_key: cfg.cursor_key.clone(),
            status_key: cfg.status_key.clone(),
            group: cfg.group.clone(),
        })
    }

    /// A fresh connection after an error; the old one may be half broken.
    pub async fn reconnect(&mut self) -> Result<(), RedisError> {
        self.conn = self.client.get_multiplexed_async_connection().await?;
        Ok(())
    }

    /// Creates the consumer group (and the stream) if missing, reading from
    /// the start so nothing already in the stream is skipped for it.
    pub async fn ensure_group(&mut self) -> Result<(), RedisError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream_key)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    pub async fn resume_state(&mut self) -> Result<RedisResume, RedisError> {
        let cursor: Option<String> = self.conn.get(&self.cursor_key).await?;
        let exists: bool = self.conn.exists(&self.stream_key).await?;
        let last: RedisValue = redis::cmd("XREVRANGE")
            .arg(&self.stream_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn)
            .await?;
        Ok(RedisResume {
            cursor: cursor.and_then(|c| c.trim().parse().ok()),
            last_entry_seq: last_entry_seq(&last),
            stream_exists: exists,
        })
    }

    /// Appends the batch and moves the cursor to `cursor` in one atomic
    /// script (`None`: the batch holds only `info` entries and no seq is known
    /// yet). `written_before` is the cursor this process last saw stored: if
    /// the key is now missing or behind it, Redis lost its data since (it keeps
    /// nothing on disk) and the batch is refused with [`LOST_DATA`], because
    /// writing it would leave the entries that were lost out of the stream for
    /// good while the index's watermark moved past them.
    pub async fn write_batch(
        &mut self,
        entries: &[StreamEntry],
        cursor: Option<i64>,
        written_before: Option<i64>,
    ) -> Result<(), RedisError> {
        let mut invocation = write_script().prepare_invoke();
        invocation
            .key(&self.stream_key)
            .key(&self.cursor_key)
            .arg(written_before.map(|c| c.to_string()).unwrap_or_default())
            .arg(cursor.map(|c| c.to_string()).unwrap_or_default());
        for entry in entries {
            invocation
                .arg(entry.kind.as_str())
                .arg(&entry.data)
                .arg(entry.seq);
        }
        invocation.invoke_async::<()>(&mut self.conn).await
    }

    /// The cursor key, to learn whether a transaction whose reply was lost ran.
    pub async fn cursor(&mut self) -> Result<Option<i64>, RedisError> {
        let cursor: Option<String> = self.conn.get(&self.cursor_key).await?;
        Ok(cursor.and_then(|c| c.trim().parse().ok()))
    }

    /// Trims entries every group has read and acknowledged; returns the new length.
    pub async fn trim(&mut self) -> Result<TrimOutcome, RedisError> {
        let info: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream_key)
            .query_async(&mut self.conn)
            .await?;
        if info.groups.is_empty() {
            // Someone removed every group; without one nothing may be trimmed,
            // and readers that come back must still find the stream.
            self.ensure_group().await?;
        }
        let mut safe: Option<(u64, u64)> = None;
        let mut max_lag = None;
        for group in &info.groups {
            let mut group_safe = parse_id(&group.last_delivered_id).unwrap_or((0, 0));
            if group.pending > 0 {
                let pending: StreamPendingReply =
                    self.conn.xpending(&self.stream_key, &group.name).await?;
                if let StreamPendingReply::Data(data) = pending {
                    if let Some(oldest) = parse_id(&data.start_id) {
                        group_safe = group_safe.min(oldest);
                    }
                }
            }
            safe = Some(safe.map_or(group_safe, |s| s.min(group_safe)));
            let lag = group.lag.map(|l| l as u64 + group.pending as u64);
            max_lag = max_lag.max(lag);
        }
        if let Some((ms, seq)) = safe.filter(|s| *s > (0, 0)) {
            redis::cmd("XTRIM")
                .arg(&self.stream_key)
                .arg("MINID")
                .arg("~")
                .arg(format!("{ms}-{seq}"))
                .query_async::<()>(&mut self.conn)
                .await?;
        }
        let length: u64 = self.conn.xlen(&self.stream_key).await?;
        Ok(TrimOutcome {
            length,
            max_group_lag: max_lag,
        })
    }

    pub async fn set_status(&mut self, json: &str, ttl_secs: u64) -> Result<(), RedisError> {
        self.conn.set_ex(&self.status_key, json, ttl_secs).await
    }
}

/// Error code of a batch refused because Redis lost the data this process wrote.
pub const LOST_DATA: &str = "LOSTDATA";

/// The batch write: check the cursor, append every entry, move the cursor, as
/// one unit (a script runs atomically, so nothing else lands in between).
fn write_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        redis::Script::new(
            r#"
local expected = ARGV[1]
if expected ~= '' then
  local stored = redis.call('GET', KEYS[2])
  if not stored or tonumber(stored) < tonumber(expected) then
    return redis.error_reply('LOSTDATA the cursor key holds ' .. (stored or 'nothing') .. ', this process had stored ' .. expected)
  end
end
for i = 3, #ARGV, 3 do
  redis.call('XADD', KEYS[1], '*', 'type', ARGV[i], 'data', ARGV[i + 1], 'seq', ARGV[i + 2])
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2])
end
return redis.status_reply('OK')
"#,
        )
    })
}

/// The `seq` field of the single entry an `XREVRANGE ... COUNT 1` returned.
fn last_entry_seq(reply: &RedisValue) -> Option<i64> {
    let RedisValue::Array(entries) = reply else {
        return None;
    };
    let RedisValue::Array(entry) = entries.first()? else {
        return None;
    };
    let RedisValue::Array(fields) = entry.get(1)? else {
        return None;
    };
    fields.chunks(2).find_map(|pair| match pair {
        [RedisValue::BulkString(k), RedisValue::BulkString(v)] if k == b"seq" => {
            std::str::from_utf8(v).ok()?.parse().ok()
        }
        _ => None,
    })
}
