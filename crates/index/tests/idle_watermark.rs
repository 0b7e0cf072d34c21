//! An index that goes idle still raises its watermark over its last batch,
//! so the committed seq tells that the database is complete without a
//! restart, and a later resume from it replays nothing already indexed.

mod common;

use std::time::{Duration, Instant};

use common::{generate, TestEnv};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_index_raises_its_watermark_over_its_last_batch() {
    let env = TestEnv::new();
    let entries = generate(300, 31);
    let last_seq: i64 = entries
        .iter()
        .filter_map(|e| e.fields.iter().find(|(k, _)| k == "seq"))
        .filter_map(|(_, v)| v.parse().ok())
        .max()
        .expect("entries have seqs");
    env.push(&entries).await;

    // One batch holds everything, committed well within the interval at
    // which a busy worker raises the watermark; then the stream is quiet.
    let mut cfg = env.config(1);
    cfg.exit_when_drained = false;
    cfg.batch_size = 1000;
    let stop = CancellationToken::new();
    let index = tokio::spawn(skyhose_index::run(cfg, stop.clone()));

    let pool = env.pool().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut watermark = None;
    while Instant::now() < deadline {
        watermark = skyhose_index::resume_seq(&pool).await.ok().flatten();
        if watermark == Some(last_seq) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    index.await.expect("index task").expect("index run");
    assert_eq!(
        watermark,
        Some(last_seq),
        "the idle index left its last batch out of the watermark"
    );
    drop(pool);
    env.cleanup().await;
}
