//! An account deletion sweeps the account's records twice: at its commit,
//! and again once every transaction running at that commit has ended (a
//! batch that read the deletions before it may still write the account's
//! records). While it waits, the worker goes on indexing; the deletion's
//! entry alone stays pending, and is acknowledged after the second sweep.

mod common;

use std::time::{Duration, Instant};

use common::{Entry, TestEnv};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn post(did: &str, rkey: &str, seq: i64) -> Entry {
    let record = json!({"$type": "app.bsky.feed.post", "text": format!("post {seq}"),
                        "createdAt": "2024-01-01T00:00:00.000Z"});
    let data = json!({"repo": did, "rev": format!("{seq:013}"), "ops": [
        {"action": "create", "path": format!("app.bsky.feed.post/{rkey}"),
         "cid": format!("bafypost{seq}"), "record": record}]});
    Entry::new("commit", &data, seq)
}

fn account_deleted(did: &str, seq: i64) -> Entry {
    Entry::new(
        "account",
        &json!({"did": did, "active": false, "status": "deleted"}),
        seq,
    )
}

/// Entries pending in the group; -1 before the index has created it.
async fn pending(env: &TestEnv) -> i64 {
    let mut conn = env.redis().await;
    let summary: Result<redis::Value, _> = redis::cmd("XPENDING")
        .arg(&env.stream_key)
        .arg("test-group")
        .query_async(&mut conn)
        .await;
    let summary = match summary {
        Ok(summary) => summary,
        Err(err) if err.code() == Some("NOGROUP") => return -1,
        Err(err) => panic!("XPENDING: {err}"),
    };
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("XPENDING count: {other:?}"),
        },
        other => panic!("XPENDING reply: {other:?}"),
    }
}

async fn live_posts(pool: &skyhose_index::Pool, did: &str) -> i64 {
    let client = pool.get().await.expect("connection");
    client
        .query_one(
            "SELECT count(*) FROM post_rows WHERE did = $1 AND live",
            &[&did],
        )
        .await
        .expect("counting posts")
        .get(0)
}

/// The test's database, migrated, and a connection holding a transaction
/// with an id open in it: running when a deletion commits, so the second
/// sweep waits for it (`COMMIT` on the connection ends it).
async fn migrated_with_a_running_transaction(
    env: &TestEnv,
) -> (skyhose_index::Pool, deadpool_postgres::Object) {
    let pool = env.created_pool().await;
    skyhose_index::migrate(&pool).await.expect("migrate");
    let long = pool.get().await.expect("connection");
    long.batch_execute("BEGIN; SELECT pg_current_xact_id()")
        .await
        .expect("taking a transaction id");
    (pool, long)
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_waits_for_older_transactions_without_holding_up_the_worker() {
    let env = TestEnv::new();
    let (pool, long) = migrated_with_a_running_transaction(&env).await;

    let (gone, stays) = ("did:plc:gone", "did:plc:stays");
    env.push(&[
        post(gone, "3kaaaaaaaaaa2", 1),
        account_deleted(gone, 2),
        post(stays, "3kaaaaaaaaaa3", 3),
    ])
    .await;

    let mut cfg = env.config(1);
    cfg.exit_when_drained = false;
    let stop = CancellationToken::new();
    let index = tokio::spawn(skyhose_index::run(cfg, stop.clone()));

    eventually("the first batch", || async {
        live_posts(&pool, stays).await == 1
    })
    .await;
    assert_eq!(live_posts(&pool, gone).await, 0, "first sweep");
    // Later events are indexed while the deletion waits.
    env.push(&[post(stays, "3kaaaaaaaaaa4", 4)]).await;
    eventually("a batch after the deletion", || async {
        live_posts(&pool, stays).await == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pending(&env).await,
        1,
        "only the deletion's entry waits for its second sweep"
    );

    long.batch_execute("COMMIT").await.expect("commit");
    drop(long);
    eventually("the second sweep", || async { pending(&env).await == 0 }).await;
    assert_eq!(live_posts(&pool, gone).await, 0);
    // The deletion held the watermark below it while it waited; with the
    // stream quiet, the sweep that acknowledges it raises the watermark.
    eventually("the watermark over the last event", || async {
        skyhose_index::resume_seq(&pool).await.ok().flatten() == Some(4)
    })
    .await;

    stop.cancel();
    let summary = index.await.expect("join").expect("index run");
    assert_eq!(summary.events_indexed, 4);
    assert_eq!(summary.dead_lettered, 0);
    drop(pool);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_finishes_the_second_sweep_it_holds() {
    let env = TestEnv::new();
    let (pool, long) = migrated_with_a_running_transaction(&env).await;

    let gone = "did:plc:gone";
    env.push(&[post(gone, "3kaaaaaaaaaa2", 1), account_deleted(gone, 2)])
        .await;
    let mut cfg = env.config(1);
    cfg.exit_when_drained = false;
    let stop = CancellationToken::new();
    let index = tokio::spawn(skyhose_index::run(cfg, stop.clone()));
    eventually("the first sweep", || async {
        pending(&env).await == 1 && live_posts(&pool, gone).await == 0
    })
    .await;

    // Stopped while the deletion waits: the worker waits for the
    // transaction a while before it gives the entry up.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!index.is_finished(), "the worker waits for the transaction");
    long.batch_execute("COMMIT").await.expect("commit");
    drop(long);
    let summary = index.await.expect("join").expect("index run");
    assert_eq!(summary.events_indexed, 2);
    assert_eq!(pending(&env).await, 0, "the deletion was acknowledged");
    assert_eq!(live_posts(&pool, gone).await, 0);
    drop(pool);
    env.cleanup().await;
}
