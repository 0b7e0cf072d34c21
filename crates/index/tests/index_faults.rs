//! Faults under the consumer group: consumers dying mid-batch, poison
//! entries, entries redelivered too often.

mod common;

use std::time::Duration;

use common::{diff, generate, model, Entry, TestEnv};
use redis::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn create_group(env: &TestEnv) {
    let mut conn = env.redis().await;
    let _: Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&env.stream_key)
        .arg("test-group")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .expect("XGROUP CREATE");
}

/// Reads `count` entries as `consumer` and never acknowledges them, like a
/// consumer that died right after its read.
async fn abandon_read(env: &TestEnv, consumer: &str, count: usize) {
    let mut conn = env.redis().await;
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("test-group")
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(&env.stream_key)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("XREADGROUP");
}

async fn dead_letters(env: &TestEnv) -> Vec<Vec<(String, String)>> {
    let mut conn = env.redis().await;
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&env.dead_letter_key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE dead letters");
    reply.into_iter().map(|(_, fields)| fields).collect()
}

async fn snapshot_json(env: &TestEnv) -> serde_json::Value {
    let pool = env.pool().await;
    serde_json::to_value(skyhose_index::snapshot(&pool).await.expect("snapshot")).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_dead_consumers_are_claimed_and_the_result_is_exact() {
    let env = TestEnv::new();
    let entries = generate(3000, 23);
    env.push(&entries).await;
    create_group(&env).await;
    abandon_read(&env, "died-after-read", 300).await;

    // A run killed in the middle of its work: its task is dropped wherever it is.
    let mut cfg = env.config(2);
    cfg.exit_when_drained = false;
    cfg.batch_size = 100;
    let killed = tokio::spawn(skyhose_index::run(cfg, CancellationToken::new()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    killed.abort();
    let _ = killed.await;

    let summary = skyhose_index::run(env.config(2), CancellationToken::new())
        .await
        .expect("second run");
    // The abandoned entries may have been claimed by the killed run already;
    // either way nothing may stay pending and the result must be exact.
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    let expected = model(&entries);
    let actual = snapshot_json(&env).await;
    assert!(actual == expected, "{}", diff(&expected, &actual));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_are_dead_lettered_and_the_rest_is_indexed() {
    let env = TestEnv::new();
    let good = generate(500, 5);
    let like = |subject: &str| {
        json!({"repo": "did:plc:poison", "rev": "9999999999999", "ops": [{"action": "create",
            "path": "app.bsky.feed.like/3kpoison", "cid": "bafypoison",
            "record": {"$type": "app.bsky.feed.like", "subject": {"uri": subject, "cid": "x"}, "createdAt": "x"}}]})
    };
    let reply = |parent: &str| {
        json!({"repo": "did:plc:poison", "rev": "9999999999999", "ops": [{"action": "create",
            "path": "app.bsky.feed.post/3kpoison", "cid": "bafypoison",
            "record": {"$type": "app.bsky.feed.post", "text": "x", "createdAt": "x",
                "reply": {"root": {"uri": parent, "cid": "x"}, "parent": {"uri": parent, "cid": "x"}}}}]})
    };
    let poison = [
        Entry {
            fields: vec![
                ("type".into(), "commit".into()),
                ("data".into(), "{not json".into()),
                ("seq".into(), "100001".into()),
            ],
        },
        Entry {
            fields: vec![
                ("type".into(), "commit".into()),
                ("seq".into(), "100002".into()),
            ],
        },
        Entry::new(
            "identity",
            &json!({"did": "not-a-did", "handle": "a.test"}),
            100003,
        ),
        Entry::new(
            "commit",
            &json!({"repo": "did:plc:x", "ops": [{"action": "create", "path": "app.bsky.feed.post/1"}]}),
            100004,
        ),
        Entry::new("commit", &like("https://example.com/not-an-at-uri"), 100005),
        Entry::new(
            "commit",
            &json!({"repo": "did:plc:x", "rev": "1", "ops": [{"action": "create",
            "path": "app.bsky.feed.post/1", "cid": "bafyx",
            "record": {"$type": "app.bsky.feed.post", "text": "nul \u{0000} inside", "createdAt": "x"}}]}),
            100006,
        ),
    ];
    // Passes validation (a DID may be 2048 characters) but is too large for
    // PostgreSQL's index rows (a reply's parent is indexed as its text): the
    // transaction fails and the batch is split until this entry is alone.
    let mut rng = common::Rng::new(77);
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let huge_did: String = std::iter::once("did:plc:".to_owned())
        .chain((0..2030).map(|_| (alphabet[rng.below(alphabet.len())] as char).to_string()))
        .collect();
    let mut random = |n: usize| -> String {
        (0..n)
            .map(|_| alphabet[rng.below(alphabet.len())] as char)
            .collect()
    };
    let long_nsid = format!(
        "{}.{}.{}.{}.{}",
        random(63),
        random(63),
        random(63),
        random(63),
        random(61)
    );
    let huge_subject = format!("at://{huge_did}/{long_nsid}/{}", random(512));
    let poison: Vec<Entry> = poison
        .into_iter()
        .chain(std::iter::once(Entry::new(
            "commit",
            &reply(&huge_subject),
            100007,
        )))
        .collect();
    let mut all = good.clone();
    for (i, entry) in poison.iter().enumerate() {
        all.insert(i * 80, entry.clone());
    }
    env.push(&all).await;
    let summary = skyhose_index::run(env.config(2), CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(summary.dead_lettered, poison.len() as u64, "{summary:?}");
    let dead = dead_letters(&env).await;
    assert_eq!(dead.len(), poison.len());
    for fields in &dead {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(field("error").is_some_and(|e| !e.is_empty()), "{fields:?}");
        assert!(field("original_id").is_some(), "{fields:?}");
        assert_eq!(
            fields.first().map(|(k, _)| k.as_str()),
            Some("type"),
            "{fields:?}"
        );
    }
    let errors: Vec<&str> = dead
        .iter()
        .filter_map(|f| {
            f.iter()
                .find(|(k, _)| k == "error")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("not valid JSON")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("missing field `data`")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("not-a-did")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("not a valid AT-URI")),
        "{errors:?}"
    );
    let expected = model(&good);
    let actual = snapshot_json(&env).await;
    assert!(actual == expected, "{}", diff(&expected, &actual));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_delivered_too_often_are_dead_lettered() {
    let env = TestEnv::new();
    let entries = generate(200, 3);
    env.push(&entries).await;
    create_group(&env).await;
    abandon_read(&env, "crashes-every-time", 10).await;
    let mut cfg = env.config(1);
    cfg.max_deliveries = 1;
    let summary = skyhose_index::run(cfg, CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(summary.dead_lettered, 10, "{summary:?}");
    let dead = dead_letters(&env).await;
    assert!(dead.iter().all(|fields| fields
        .iter()
        .any(|(k, v)| k == "error" && v.contains("delivered 2 times"))));
    env.cleanup().await;
}
