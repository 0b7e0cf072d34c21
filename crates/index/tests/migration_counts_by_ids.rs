//! Migration 0034 on a database written by the schema before it: counters
//! keyed by the counted record's URI move to its ids, post rows gain
//! theirs, and readers see the same counts.

mod common;

use common::TestEnv;

/// A post's uri and its counters: likes, reposts, replies, quotes.
type PostCounts = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

#[tokio::test]
async fn counters_move_from_uris_to_ids() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    common::migrate_before(&pool, 34, 99).await;

    let did = "did:plc:countsmigrationaaaaaaaa";
    let tid_post = format!("at://{did}/app.bsky.feed.post/3lpostaaaaaaa");
    let named_post = format!("at://{did}/app.bsky.feed.post/not-a-tid");
    let generator = format!("at://{did}/app.bsky.feed.generator/cats");
    let client = pool.get().await.expect("connection");
    client
        .batch_execute(&format!(
            "INSERT INTO post_rows (uri, did, rkey, cid, rev, seq, live, record) VALUES \
               ('{tid_post}', '{did}', '3lpostaaaaaaa', 'bafypost', '3rev1', 1, true, \
                '{{\"$type\": \"app.bsky.feed.post\", \"text\": \"a\"}}'), \
               ('{named_post}', '{did}', 'not-a-tid', 'bafypost', '3rev2', 2, true, \
                '{{\"$type\": \"app.bsky.feed.post\", \"text\": \"b\"}}'); \
             INSERT INTO post_counts (uri, likes, reposts, replies, quotes) VALUES \
               ('{tid_post}', 3, 2, 1, 4), \
               ('{named_post}', 5, 0, 0, 0), \
               ('{generator}', 7, 0, 0, 0), \
               ('https://example.com/not-a-record', 9, 0, 0, 0), \
               ('at://{did}/app.bsky.feed.post/zero', 0, 0, 0, 0);"
        ))
        .await
        .expect("rows as the previous schema had them");

    let report = skyhose_index::migrate(&pool).await.expect("migration 0034");
    assert!(report.applied.starts_with(&[34]), "{:?}", report.applied);

    // Each post's counters, found through the ids its row now keeps.
    let rows = client
        .query(
            "SELECT p.uri, c.likes, c.reposts, c.replies, c.quotes FROM posts p \
             LEFT JOIN LATERAL counts_of(p.actor, 'app.bsky.feed.post', p.rkey_id) c ON true \
             ORDER BY p.uri",
            &[],
        )
        .await
        .expect("post counts");
    let counts: Vec<PostCounts> = rows
        .iter()
        .map(|r| {
            (
                r.get("uri"),
                r.get("likes"),
                r.get("reposts"),
                r.get("replies"),
                r.get("quotes"),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            (tid_post.clone(), Some(3), Some(2), Some(1), Some(4)),
            (named_post.clone(), Some(5), Some(0), Some(0), Some(0)),
        ]
    );
    // Every post row has its ids, the key's as the compact rows store it.
    let keys = client
        .query_one(
            "SELECT count(*) AS n FROM post_rows \
             WHERE actor = did_id(did) AND rkey_id = rkey_id(rkey) AND rkey_text(rkey_id) = rkey",
            &[],
        )
        .await
        .expect("post ids");
    assert_eq!(keys.get::<_, i64>("n"), 2);
    // A generator's likes keep their count; nothing is kept for a subject
    // that is not a record's URI, nor for a record counted zero times.
    let generator_likes = client
        .query_one(
            "SELECT c.likes FROM counts_of(did_id($1), 'app.bsky.feed.generator', rkey_id('cats')) c",
            &[&did],
        )
        .await
        .expect("generator likes");
    assert_eq!(generator_likes.get::<_, i64>("likes"), 7);
    let stored = client
        .query_one("SELECT count(*) AS n FROM post_counts", &[])
        .await
        .expect("counter rows");
    assert_eq!(stored.get::<_, i64>("n"), 3);
    env.cleanup().await;
}
