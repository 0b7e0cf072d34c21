//! A connection of its own for the one hot Redis command, `XREADGROUP`,
//! whose reply (a batch of entries, megabytes) is read straight into
//! [`RawEntry`]s.
//!
//! Through the `redis` crate every id, field name and value of a reply
//! became a reply value, then a copy: reading replies was a fifth of the
//! indexer's CPU. Here the reply is read into one reused buffer, walked
//! once by length prefixes as it arrives, and each field is copied once.
//! Every other command a worker sends goes through the `redis` crate, and
//! so do the error replies, so that errors keep their kinds and codes.

use std::io;
use std::time::Duration;

use redis::RedisError;
use skyhose_connect::{Duplex, RedisTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::entry::RawEntry;
use crate::error::IndexError;

/// A Redis connection that reads stream entries for consumer groups.
pub struct EntryReader {
    io: Box<dyn Duplex>,
    buf: Vec<u8>,
    /// A command was sent and its reply not read to the end (the read was
    /// cancelled or failed): what comes next on the connection is not known.
    mid_reply: bool,
}

/// How much a read asks of the socket at a time.
const READ_CHUNK: usize = 256 * 1024;
/// How long past its `BLOCK` time a reply may take before Redis counts as
/// gone, so a connection that went silent is not waited on forever.
const REPLY_GRACE: Duration = Duration::from_secs(10);
/// A buffer grown past this by an unusually large reply is given back, so
/// that one batch of huge entries does not stay in the worker's memory.
const KEPT_BUFFER: usize = 64 * 1024 * 1024;
/// How long connecting may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger lengths are not a reply Redis could send (its bulk strings stop
/// at 512 MB): the bytes are not RESP.
const MAX_LEN: i64 = 1 << 30;

impl EntryReader {
    /// Connects as `target` says (TCP, TLS or a Unix socket), authenticating
    /// and selecting its database.
    pub async fn connect(target: &RedisTarget) -> Result<Self, IndexError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_now(target)).await {
            Ok(connected) => connected,
            Err(_) => Err(IndexError::Redis {
                context: "connecting the stream reader".into(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {CONNECT_TIMEOUT:?}"),
                )
                .into(),
            }),
        }
    }

    async fn connect_now(target: &RedisTarget) -> Result<Self, IndexError> {
        let io: Box<dyn Duplex> =
            target
                .open_stream()
                .await
                .map_err(|source| IndexError::Redis {
                    context: "connecting the stream reader".into(),
                    source: source.into(),
                })?;
        let info = target.info();
        let mut reader = EntryReader {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
            mid_reply: false,
        };
        if let Some(password) = &info.redis.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &info.redis.username {
                auth.arg(username);
            }
            auth.arg(password);
            reader.command(&auth, None, "AUTH").await?;
        }
        if info.redis.db != 0 {
            let mut select = redis::cmd("SELECT");
            select.arg(info.redis.db);
            reader.command(&select, None, "SELECT").await?;
        }
        Ok(reader)
    }

    /// False once a reply was left unread: the connection must be replaced.
    pub fn is_usable(&self) -> bool {
        !self.mid_reply
    }

    /// `XREADGROUP GROUP group consumer COUNT count [BLOCK ms] STREAMS key from`.
    pub async fn read_group(
        &mut self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block_ms: Option<u64>,
        from: &str,
    ) -> Result<Vec<RawEntry>, IndexError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block_ms) = block_ms {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(key).arg(from);
        let context = format!("XREADGROUP on {key}");
        let block = block_ms.map(Duration::from_millis);
        let len = self.command(&cmd, block, &context).await?;
        let entries = entries_of(&self.buf[..len])
            .map_err(|detail| IndexError::RedisReply { context, detail });
        if self.buf.capacity() > KEPT_BUFFER {
            self.buf = Vec::with_capacity(READ_CHUNK);
        }
        entries
    }

    /// Sends `cmd` and reads its whole reply into the buffer, returning its
    /// length; an error reply becomes the `redis` crate's error for it.
    async fn command(
        &mut self,
        cmd: &redis::Cmd,
        block: Option<Duration>,
        context: &str,
    ) -> Result<usize, IndexError> {
        let failed = |source: RedisError| IndexError::Redis {
            context: context.to_owned(),
            source,
        };
        if self.mid_reply {
            return Err(failed(
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "an earlier reply was left unread",
                )
                .into(),
            ));
        }
        self.mid_reply = true;
        self.io
            .write_all(&cmd.get_packed_command())
            .await
            .map_err(|err| failed(err.into()))?;
        let limit = block.unwrap_or_default() + REPLY_GRACE;
        let len = match tokio::time::timeout(limit, self.read_reply()).await {
            Ok(read) => read.map_err(failed)?,
            Err(_) => {
                return Err(failed(
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no reply within {limit:?}"),
                    )
                    .into(),
                ))
            }
        };
        self.mid_reply = false;
        if self.buf.first() == Some(&b'-') {
            let error = redis::parse_redis_value(&self.buf[..len])
                .and_then(redis::Value::extract_error)
                .err()
                .unwrap_or_else(|| {
                    RedisError::from((
                        redis::ErrorKind::ResponseError,
                        "error reply",
                        String::from_utf8_lossy(&self.buf[..len]).into_owned(),
                    ))
                });
            return Err(failed(error));
        }
        Ok(len)
    }

    async fn read_reply(&mut self) -> Result<usize, RedisError> {
        self.buf.clear();
        let mut scan = ReplyScan::default();
        loop {
            let complete = scan.advance(&self.buf).map_err(|detail| {
                RedisError::from((redis::ErrorKind::ParseError, "not a RESP reply", detail))
            })?;
            if complete {
                if scan.pos != self.buf.len() {
                    return Err(RedisError::from((
                        redis::ErrorKind::ParseError,
                        "bytes after the reply",
                        format!("{} of them", self.buf.len() - scan.pos),
                    )));
                }
                return Ok(scan.pos);
            }
            self.buf.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection mid-reply",
                )
                .into());
            }
        }
    }
}

/// How far a reply that is still arriving has been walked, and how many
/// elements each array that is open at that point still waits for. Walking
/// on from where it stopped keeps a reply that arrives in many reads linear.
#[derive(Debug, Default)]
struct ReplyScan {
    pos: usize,
    open: Vec<i64>,
    done: bool,
}

/// The header line at `at` (type byte excluded) and where the next begins;
/// `None` until its `\r\n` has arrived.
fn header(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at + 1..)?;
    let newline = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, at + 1 + newline + 1))
}

fn length(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|n| (-1..=MAX_LEN).contains(n))
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(line)))
}

impl ReplyScan {
    /// Walks what `buf` holds past `pos`; true once the whole reply is in.
    fn advance(&mut self, buf: &[u8]) -> Result<bool, String> {
        while !self.done {
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(false);
            };
            let Some((line, next)) = header(buf, self.pos) else {
                return Ok(false);
            };
            match kind {
                b'*' => {
                    let n = length(line)?;
                    self.pos = next;
                    if n > 0 {
                        self.open.push(n);
                        continue;
                    }
                }
                b'$' => {
                    let n = length(line)?;
                    if n >= 0 {
                        let end = next + n as usize + 2;
                        if end > buf.len() {
                            return Ok(false);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(format!("bulk string at byte {} overruns", self.pos));
                        }
                        self.pos = end;
                    } else {
                        self.pos = next;
                    }
                }
                b'+' | b'-' | b':' => self.pos = next,
                other => {
                    return Err(format!(
                        "unexpected type byte {:?} at byte {}",
                        other as char, self.pos
                    ))
                }
            }
            // One element is complete, and with it every array it closes.
            loop {
                match self.open.last_mut() {
                    None => {
                        self.done = true;
                        break;
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Reads a complete reply's elements in order.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn head(&mut self, kind: u8) -> Result<i64, String> {
        let found = self.buf.get(self.pos).copied();
        if found != Some(kind) {
            return Err(format!(
                "expected {:?} at byte {}, found {:?}",
                kind as char,
                self.pos,
                found.map(|b| b as char)
            ));
        }
        let (line, next) = header(self.buf, self.pos).ok_or("reply ends early")?;
        let n = length(line)?;
        self.pos = next;
        Ok(n)
    }

    /// An array's length; `None` for a nil array.
    fn array(&mut self) -> Result<Option<usize>, String> {
        let n = self.head(b'*')?;
        Ok((n >= 0).then_some(n as usize))
    }

    /// A bulk string; `None` for a nil one.
    fn bulk(&mut self) -> Result<Option<&'a [u8]>, String> {
        let n = self.head(b'$')?;
        if n < 0 {
            return Ok(None);
        }
        let start = self.pos;
        let end = start + n as usize;
        let bytes = self.buf.get(start..end).ok_or("bulk string ends early")?;
        self.pos = end + 2;
        Ok(Some(bytes))
    }

    /// A bulk string as text (empty when nil). Entries are UTF-8 JSON; an
    /// odd one that is not has its bytes replaced, and fails validation.
    fn text(&mut self) -> Result<String, String> {
        Ok(match self.bulk()? {
            None => String::new(),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_owned(),
                Err(_) => String::from_utf8_lossy(bytes).into_owned(),
            },
        })
    }
}

/// A whole `XREADGROUP` reply read as a worker reads it, without the
/// socket: walked by its length prefixes, then turned into entries. Public
/// for the A/B benchmark against the `redis` crate (`benches/resp.rs`).
pub fn entries_of_reply(reply: &[u8]) -> Result<Vec<RawEntry>, String> {
    let mut scan = ReplyScan::default();
    if !scan.advance(reply)? {
        return Err("the reply ends early".into());
    }
    entries_of(reply)
}

/// The entries of an `XREADGROUP` reply: `[[key, [[id, [field, value, ...]],
/// ...]], ...]`, nil when nothing came. An entry that was deleted after its
/// delivery (`[id, nil]`, in a consumer's history) is left out.
fn entries_of(reply: &[u8]) -> Result<Vec<RawEntry>, String> {
    let mut cursor = Cursor { buf: reply, pos: 0 };
    let mut entries = Vec::new();
    let Some(streams) = cursor.array()? else {
        return Ok(entries);
    };
    for _ in 0..streams {
        if cursor.array()? != Some(2) {
            return Err("a stream's part is not [key, entries]".into());
        }
        cursor.bulk()?;
        let Some(count) = cursor.array()? else {
            continue;
        };
        entries.reserve(count);
        for _ in 0..count {
            if cursor.array()? != Some(2) {
                return Err("an entry is not [id, fields]".into());
            }
            let id = cursor.text()?;
            let Some(items) = cursor.array()? else {
                continue;
            };
            if items % 2 != 0 {
                return Err(format!("entry {id} has an odd number of field items"));
            }
            let mut fields = Vec::with_capacity(items / 2);
            for _ in 0..items / 2 {
                fields.push((cursor.text()?, cursor.text()?));
            }
            entries.push(RawEntry { id, fields });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &[u8] = b"*1\r\n*2\r\n$6\r\nevents\r\n*3\r\n\
        *2\r\n$3\r\n1-1\r\n*4\r\n$4\r\ntype\r\n$6\r\ncommit\r\n$4\r\ndata\r\n$7\r\n{\"a\":1}\r\n\
        *2\r\n$3\r\n1-2\r\n*-1\r\n\
        *2\r\n$3\r\n1-3\r\n*2\r\n$3\r\nseq\r\n$-1\r\n";

    fn expected() -> Vec<RawEntry> {
        vec![
            RawEntry {
                id: "1-1".into(),
                fields: vec![
                    ("type".into(), "commit".into()),
                    ("data".into(), "{\"a\":1}".into()),
                ],
            },
            RawEntry {
                id: "1-3".into(),
                fields: vec![("seq".into(), String::new())],
            },
        ]
    }

    #[test]
    fn reads_entries_and_leaves_out_deleted_ones() {
        assert_eq!(entries_of(REPLY), Ok(expected()));
        assert_eq!(entries_of(b"*-1\r\n"), Ok(Vec::new()));
        assert_eq!(entries_of(b"*0\r\n"), Ok(Vec::new()));
    }

    #[test]
    fn a_reply_is_complete_only_when_its_last_byte_arrived() {
        for cut in 0..REPLY.len() {
            let mut scan = ReplyScan::default();
            assert_eq!(scan.advance(&REPLY[..cut]), Ok(false), "cut at {cut}");
            // Walking on from where it stopped finds the same end.
            assert_eq!(scan.advance(REPLY), Ok(true), "cut at {cut}");
            assert_eq!(scan.pos, REPLY.len());
        }
        for whole in [
            &b"*-1\r\n"[..],
            b"*0\r\n",
            b"+OK\r\n",
            b"-NOGROUP x\r\n",
            b":5\r\n",
        ] {
            let mut scan = ReplyScan::default();
            assert_eq!(scan.advance(whole), Ok(true));
            assert_eq!(scan.pos, whole.len());
        }
    }

    #[test]
    fn arriving_byte_by_byte_walks_each_byte_about_once() {
        let mut scan = ReplyScan::default();
        for end in 1..=REPLY.len() {
            let complete = scan.advance(&REPLY[..end]).expect("valid");
            assert_eq!(complete, end == REPLY.len());
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"?x\r\n"[..],
            b"*x\r\n",
            b"$99999999999\r\n",
            b"*1\r\n$3\r\nabcd\r\n",
            b"*-5\r\n",
        ] {
            let mut scan = ReplyScan::default();
            assert!(
                scan.advance(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"*1\r\n$3\r\nkey\r\n"[..],
            b"*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\n1\r\n*1\r\n$1\r\na\r\n",
            b"+OK\r\n",
        ] {
            assert!(
                entries_of(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Against the real server, in a database other than 0 (so the
    /// connection must select it): a large value, bytes that are not
    /// UTF-8, a timed-out blocking read and a missing group.
    #[tokio::test]
    async fn reads_a_group_from_a_real_redis() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let target =
            RedisTarget::parse(&format!("{}/3", url.trim_end_matches('/'))).expect("redis url");
        let client = target.client().expect("redis client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let key = format!(
            "test:reader:{}:{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let large = "x".repeat(3 * READ_CHUNK + 17);
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("data")
            .arg(&large)
            .ignore();
        pipe.cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("data")
            .arg(&b"a\xffb"[..])
            .ignore();
        for n in 0..500 {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("seq")
                .arg(n)
                .ignore();
        }
        pipe.cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("g")
            .arg("0")
            .ignore();
        let () = pipe.query_async(&mut conn).await.expect("filled");

        let mut reader = EntryReader::connect(&target).await.expect("connected");
        let entries = reader
            .read_group(&key, "g", "c", 1000, Some(100), ">")
            .await
            .expect("read");
        assert_eq!(entries.len(), 502);
        assert_eq!(entries[0].field("data"), Some(large.as_str()));
        assert_eq!(entries[1].field("data"), Some("a\u{fffd}b"));
        assert_eq!(entries[501].field("seq"), Some("499"));
        let empty = reader
            .read_group(&key, "g", "c", 1000, Some(50), ">")
            .await
            .expect("timed out");
        assert!(empty.is_empty());
        let pending = reader
            .read_group(&key, "g", "c", 10, None, "0")
            .await
            .expect("history");
        assert_eq!(pending.len(), 10);
        let missing = reader
            .read_group(&key, "nope", "c", 10, Some(10), ">")
            .await
            .expect_err("no such group");
        assert!(missing.is_missing_group(), "{missing}");
        assert!(reader.is_usable());

        let () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("cleaned up");
    }
}
