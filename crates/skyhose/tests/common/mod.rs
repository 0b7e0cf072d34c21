//! What the binary's end-to-end tests share.

use redis::AsyncCommands;

/// Deletes every key under `prefix:`, the stream, cursor and other keys a
/// test gave the processes it started.
pub async fn delete_keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = conn.del(keys).await;
    }
}

/// GET over loopback HTTP/1.1: status line and body.
#[allow(dead_code)] // not every test binary that shares this module calls it
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}
