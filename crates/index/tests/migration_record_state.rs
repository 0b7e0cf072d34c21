//! Migration 0010 on a database written by the schema before it: the state
//! of posts, likes, reposts and follows moves from `records` into their kind
//! rows, tombstones included, and readers see the same live records.

mod common;

use common::TestEnv;

/// The first column of `sql`'s rows.
async fn uris(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A kind row's state: `uri, live, rev, seq, cid, record`.
type RowState = (String, bool, String, i64, Option<String>, Option<String>);

#[tokio::test]
async fn kind_rows_take_over_the_record_state_of_the_four_kinds() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    common::migrate_before(&pool, 10, 99).await;

    let did = "did:plc:migrationtestaaaaaaaaaaa";
    let post = format!("at://{did}/app.bsky.feed.post/3lpost");
    let like = format!("at://{did}/app.bsky.feed.like/3llive");
    let dead_like = format!("at://{did}/app.bsky.feed.like/3ldead");
    let block = format!("at://{did}/app.bsky.graph.block/3lblock");
    let client = pool.get().await.expect("connection");
    // What the index wrote before 0010: every record's state in `records`,
    // the live ones projected into their kind tables.
    client
        .batch_execute(&format!(
            "INSERT INTO records (uri, did, collection, rkey, cid, rev, seq, live, subject, record) VALUES \
               ('{post}', '{did}', 'app.bsky.feed.post', '3lpost', 'bafypost', '3rev1', 1, true, NULL, \
                '{{\"$type\": \"app.bsky.feed.post\", \"text\": \"hi\"}}'), \
               ('{like}', '{did}', 'app.bsky.feed.like', '3llive', 'bafylike', '3rev2', 2, true, '{post}', \
                '{{\"$type\": \"app.bsky.feed.like\"}}'), \
               ('{dead_like}', '{did}', 'app.bsky.feed.like', '3ldead', NULL, '3rev3', 3, false, NULL, NULL), \
               ('{block}', '{did}', 'app.bsky.graph.block', '3lblock', 'bafyblock', '3rev4', 4, true, NULL, \
                '{{\"$type\": \"app.bsky.graph.block\"}}'); \
             INSERT INTO posts (uri, did, rkey, cid, text, record) VALUES \
               ('{post}', '{did}', '3lpost', 'bafypost', 'hi', '{{\"$type\": \"app.bsky.feed.post\", \"text\": \"hi\"}}'); \
             INSERT INTO likes (uri, did, rkey, cid, subject_uri) VALUES \
               ('{like}', '{did}', '3llive', 'bafylike', '{post}'); \
             INSERT INTO blocks (uri, did, rkey, cid, subject_did) VALUES \
               ('{block}', '{did}', '3lblock', 'bafyblock', 'did:plc:other'); \
             INSERT INTO notifications (recipient_did, author_did, reason, reason_subject, record_uri, record_cid) VALUES \
               ('did:plc:other', '{did}', 'mention', NULL, '{post}', 'bafypost'), \
               ('did:plc:other', '{did}', 'like', '{post}', '{like}', 'bafylike'), \
               ('did:plc:other', '{did}', 'reply', NULL, '{dead_like}', 'bafydead');"
        ))
        .await
        .expect("rows as the previous schema had them");

    let report = skyhose_index::migrate(&pool).await.expect("migration 0010");
    assert!(
        report.applied.starts_with(&[10, 11, 12, 13, 14]),
        "{:?}",
        report.applied
    );

    let rows = client
        .query(
            "SELECT uri, live, rev, seq, cid, record::text FROM like_state ORDER BY uri",
            &[],
        )
        .await
        .expect("like rows");
    let states: Vec<RowState> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        states,
        vec![
            (dead_like.clone(), false, "3rev3".into(), 3, None, None),
            (
                like.clone(),
                true,
                "3rev2".into(),
                2,
                Some("bafylike".into()),
                Some(r#"{"$type": "app.bsky.feed.like"}"#.into())
            ),
        ]
    );
    assert_eq!(
        uris(&client, "SELECT uri FROM likes").await,
        vec![like.clone()]
    );
    assert_eq!(
        uris(&client, "SELECT uri FROM records").await,
        vec![block.clone()],
        "records keeps the other kinds"
    );
    let live: Vec<(String, String, Option<String>)> = client
        .query(
            "SELECT uri, collection, cid FROM all_records WHERE live ORDER BY uri",
            &[],
        )
        .await
        .expect("all_records")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut expected = vec![
        (
            block,
            "app.bsky.graph.block".to_owned(),
            Some("bafyblock".to_owned()),
        ),
        (
            like,
            "app.bsky.feed.like".to_owned(),
            Some("bafylike".to_owned()),
        ),
        (
            post.clone(),
            "app.bsky.feed.post".to_owned(),
            Some("bafypost".to_owned()),
        ),
    ];
    expected.sort();
    assert_eq!(live, expected);
    let post_state: (String, i64, bool) = client
        .query_one(
            "SELECT rev, seq, live FROM post_rows WHERE uri = $1",
            &[&post],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .expect("post row");
    assert_eq!(post_state, ("3rev1".to_owned(), 1, true));
    // 0013: the post's mention stays, with the post's seq; the like's is
    // its row now (a self-like here, so none); a dead record's goes.
    let notifications: Vec<(String, String, String, i64)> = client
        .query(
            "SELECT recipient_did, reason, record_uri, seq FROM all_notifications",
            &[],
        )
        .await
        .expect("all_notifications")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        notifications,
        vec![("did:plc:other".to_owned(), "mention".to_owned(), post, 1)]
    );

    drop(client);
    drop(pool);
    env.cleanup().await;
}
