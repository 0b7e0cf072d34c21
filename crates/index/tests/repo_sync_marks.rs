//! With repo sync on, the index queues repos for the backfill in the batch
//! transaction: accounts met for the first time once, and repos it can no
//! longer trust again whatever their state: a #sync, an #account
//! `desynchronized`, a tooBig commit, an op whose record could not be
//! read, and a commit whose prevData is not the root held for the repo. A
//! resync of a repo being loaded asks for one more load after it. An
//! account active again re-queues its repo only if its load failed.

mod common;

use common::{Entry, TestEnv};
use serde_json::json;
use skyhose_index::CancellationToken;

const A: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "did:plc:cccccccccccccccccccccccc";
const D: &str = "did:plc:dddddddddddddddddddddddd";
const E: &str = "did:plc:eeeeeeeeeeeeeeeeeeeeeeee";
const F: &str = "did:plc:ffffffffffffffffffffffff";
const G: &str = "did:plc:gggggggggggggggggggggggg";

fn commit(repo: &str, rev: &str, prev: Option<&str>, data: &str, seq: i64) -> Entry {
    Entry::new(
        "commit",
        &json!({"repo": repo, "rev": rev, "ops": [], "prevData": prev, "data": data}),
        seq,
    )
}

async fn index(env: &TestEnv, entries: &[Entry]) {
    env.push(entries).await;
    let mut cfg = env.config(2);
    cfg.repo_sync = true;
    let summary = skyhose_index::run(cfg, CancellationToken::new())
        .await
        .expect("index run");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
}

async fn queue(pool: &skyhose_index::Pool) -> Vec<(String, String, String, bool)> {
    let client = pool.get().await.unwrap();
    client
        .query(
            "SELECT did, state, reason, again FROM backfill_repos ORDER BY did",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("did"),
                r.get("state"),
                r.get("reason"),
                r.get("again"),
            )
        })
        .collect()
}

fn row(did: &str, state: &str, reason: &str, again: bool) -> (String, String, String, bool) {
    (did.into(), state.into(), reason.into(), again)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sights_queue_once_and_each_cause_of_resync_queues_again() {
    let env = TestEnv::new();
    // Everyone is met: A..E as authors, F as the subject of A's follow.
    let follow = Entry::new(
        "commit",
        &json!({"repo": A, "rev": "3k2aaaaaaaaa2", "prevData": "bafya1", "data": "bafya2",
                "ops": [{"action": "create", "path": "app.bsky.graph.follow/3k2aaaaaaaaa2",
                         "cid": "bafyf1",
                         "record": {"$type": "app.bsky.graph.follow", "subject": F,
                                    "createdAt": "2024-01-01T00:00:00.000Z"}}]}),
        2,
    );
    index(
        &env,
        &[
            commit(A, "3k2aaaaaaaaa1", None, "bafya1", 1),
            follow,
            commit(B, "3k2aaaaaaaaa1", None, "bafyb1", 3),
            commit(C, "3k2aaaaaaaaa1", None, "bafyc1", 4),
            commit(D, "3k2aaaaaaaaa1", None, "bafyd1", 5),
            commit(E, "3k2aaaaaaaaa1", None, "bafye1", 6),
            commit(G, "3k2aaaaaaaaa1", None, "bafyg1", 7),
        ],
    )
    .await;
    let pool = env.pool().await;
    let met: Vec<_> = [A, B, C, D, E, F, G]
        .iter()
        .map(|did| row(did, "pending", "first_seen", false))
        .collect();
    assert_eq!(queue(&pool).await, met);
    // The backfill loads them all; G is being loaded right now.
    let client = pool.get().await.unwrap();
    client
        .execute("UPDATE backfill_repos SET state = 'done'", &[])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE backfill_repos SET state = 'running' WHERE did = $1",
            &[&G],
        )
        .await
        .unwrap();

    index(
        &env,
        &[
            // A chains on its root: nothing to do.
            commit(A, "3k2aaaaaaaaa3", Some("bafya2"), "bafya3", 10),
            // B's commit does not start from the root held.
            commit(B, "3k2aaaaaaaaa2", Some("bafyXX"), "bafyb2", 11),
            Entry::new("sync", &json!({"did": C, "rev": "3k2aaaaaaaaa2"}), 12),
            Entry::new(
                "account",
                &json!({"did": D, "active": false, "status": "desynchronized"}),
                13,
            ),
            Entry::new(
                "commit",
                &json!({"repo": E, "rev": "3k2aaaaaaaaa2", "ops": [], "tooBig": true}),
                14,
            ),
            Entry::new(
                "commit",
                &json!({"repo": G, "rev": "3k2aaaaaaaaa2", "ops": [
                    {"action": "create", "path": "app.bsky.feed.post/3k2aaaaaaaaa2",
                     "cid": "bafyp", "error": "record block missing"}]}),
                15,
            ),
            // An old replay of A below the root's rev is not compared.
            commit(A, "3k2aaaaaaaaa1", Some("bafyZZ"), "bafya1", 16),
        ],
    )
    .await;
    assert_eq!(
        queue(&pool).await,
        vec![
            row(A, "done", "first_seen", false),
            row(B, "pending", "resync:prev_data", false),
            row(C, "pending", "resync:sync", false),
            row(D, "pending", "resync:desynchronized", false),
            row(E, "pending", "resync:too_big", false),
            row(F, "done", "first_seen", false),
            row(G, "running", "resync:unreadable_op", true),
        ]
    );
    // After a #sync the root is unknown: the next commit is not compared.
    client
        .execute("UPDATE backfill_repos SET state = 'done'", &[])
        .await
        .unwrap();
    index(
        &env,
        &[commit(
            C,
            "3k2aaaaaaaaa3",
            Some("bafyanything"),
            "bafyc3",
            20,
        )],
    )
    .await;
    let states: Vec<String> = queue(&pool).await.into_iter().map(|r| r.1).collect();
    assert!(states.iter().all(|s| s == "done"), "{states:?}");
    drop(client);
    drop(pool);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_active_again_requeues_its_failed_repo_only() {
    let env = TestEnv::new();
    let account = |did: &str, active: bool, seq: i64| {
        let data = if active {
            json!({"did": did, "active": true})
        } else {
            json!({"did": did, "active": false, "status": "takendown"})
        };
        Entry::new("account", &data, seq)
    };
    index(
        &env,
        &[
            commit(A, "3k2aaaaaaaaa1", None, "bafya1", 1),
            commit(B, "3k2aaaaaaaaa1", None, "bafyb1", 2),
            commit(C, "3k2aaaaaaaaa1", None, "bafyc1", 3),
            account(A, false, 4),
            account(B, false, 5),
            account(C, false, 6),
            // Met first as active: a first sight, nothing failed to redo.
            account(D, true, 7),
        ],
    )
    .await;
    let pool = env.pool().await;
    // A's and B's hosts refused their repos while they were taken down;
    // C was loaded before its takedown.
    let client = pool.get().await.unwrap();
    client
        .execute(
            "UPDATE backfill_repos SET state = 'failed', error_reason = 'repo_takendown'              WHERE did = ANY($1)",
            &[&vec![A, B]],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE backfill_repos SET state = 'done' WHERE did = ANY($1)",
            &[&vec![C, D]],
        )
        .await
        .unwrap();
    index(
        &env,
        &[
            account(A, true, 10),
            account(C, true, 11),
            // B is back, then taken down again within the batch.
            account(B, true, 12),
            account(B, false, 13),
        ],
    )
    .await;
    assert_eq!(
        queue(&pool).await,
        vec![
            row(A, "pending", "resync:reactivated", false),
            row(B, "failed", "first_seen", false),
            row(C, "done", "first_seen", false),
            row(D, "done", "first_seen", false),
        ]
    );
    drop(client);
    drop(pool);
    env.cleanup().await;
}
