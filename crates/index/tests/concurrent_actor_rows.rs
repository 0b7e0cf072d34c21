//! When another transaction creates one of a batch's actor rows first, the
//! batch finds it has lost the row, rolls back and is redone against the
//! row that now exists: nothing is lost or counted twice.

mod common;

use std::time::Duration;

use common::{Entry, TestEnv};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_loses_an_actor_row_to_a_concurrent_one_is_redone() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    skyhose_index::migrate(&pool).await.expect("migrate");
    let (follower, followed) = ("did:plc:follower", "did:plc:followed");

    // Another transaction creates the followed account's row and keeps it
    // uncommitted while the batch that counts the follow runs.
    let other = pool.get().await.expect("connection");
    other
        .batch_execute(&format!(
            "BEGIN; INSERT INTO actors (did, indexed, followers) VALUES ('{followed}', true, 5)"
        ))
        .await
        .expect("an uncommitted actor row");

    let record = json!({"$type": "app.bsky.graph.follow", "subject": followed,
                        "createdAt": "2024-01-01T00:00:00.000Z"});
    let data = json!({"repo": follower, "rev": "3kaaaaaaaaaa2", "ops": [
        {"action": "create", "path": "app.bsky.graph.follow/3kaaaaaaaaaa2",
         "cid": "bafyfollow", "record": record}]});
    env.push(&[Entry::new("commit", &data, 1)]).await;
    let index = tokio::spawn(skyhose_index::run(env.config(1), CancellationToken::new()));

    // The batch waits on the uncommitted row.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!index.is_finished(), "the batch did not wait for the row");
    other.batch_execute("COMMIT").await.expect("commit");

    let summary = tokio::time::timeout(Duration::from_secs(30), index)
        .await
        .expect("the index finished")
        .expect("index task")
        .expect("index run");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    let client = pool.get().await.expect("connection");
    let row = client
        .query_one(
            "SELECT followers, indexed FROM actors WHERE did = $1",
            &[&followed],
        )
        .await
        .expect("the followed actor");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, bool>(1)),
        (6, true),
        "the follow is counted once, on the row the other transaction made"
    );
    let follows: i64 = client
        .query_one("SELECT count(*) FROM follows WHERE did = $1", &[&follower])
        .await
        .expect("follows")
        .get(0);
    assert_eq!(follows, 1);
    drop(client);
    drop(other);
    env.cleanup().await;
}
