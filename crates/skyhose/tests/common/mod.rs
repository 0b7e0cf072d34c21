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
