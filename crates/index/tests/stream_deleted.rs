//! Redis loses the stream while workers wait on it in a blocking read (it
//! keeps nothing on disk; a flush or restart does this): the workers recreate
//! their group and index what ingest writes next, instead of exiting.

mod common;

use std::time::{Duration, Instant};

use common::{generate, TestEnv};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_the_stream_vanishing_under_a_blocking_read() {
    let env = TestEnv::new();
    let entries = generate(400, 37);
    let (first, second) = entries.split_at(200);
    env.push(first).await;

    let mut cfg = env.config(2);
    cfg.exit_when_drained = false;
    cfg.block = Duration::from_secs(2);
    let stop = CancellationToken::new();
    let index = tokio::spawn(skyhose_index::run(cfg, stop.clone()));
    let pool = env.pool().await;
    let wait_for = |seq: i64| {
        let pool = pool.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if skyhose_index::resume_seq(&pool).await.ok().flatten() >= Some(seq) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    let seq_of = |entries: &[common::Entry]| -> i64 {
        entries
            .iter()
            .filter_map(|e| e.fields.iter().find(|(k, _)| k == "seq"))
            .filter_map(|(_, v)| v.parse().ok())
            .max()
            .expect("entries have seqs")
    };
    assert!(
        wait_for(seq_of(first)).await,
        "the first half was not indexed"
    );

    // Both workers are now blocked in XREADGROUP on the stream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = env.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(&env.stream_key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !index.is_finished(),
        "the index stopped when the stream was deleted: {:?}",
        index.await
    );
    env.push(second).await;
    assert!(
        wait_for(seq_of(second)).await,
        "entries written after the loss were not indexed"
    );
    stop.cancel();
    index.await.expect("index task").expect("index run");
    drop(pool);
    env.cleanup().await;
}
