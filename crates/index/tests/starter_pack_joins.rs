//! Who joined through a starter pack (migration 0024): a profile's
//! `joinedViaStarterPack` is kept in its projection row, by the migration
//! for the profiles indexed before it and by the index for new ones.

mod common;

use common::{Entry, TestEnv};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PACK: &str = "at://did:plc:packowner/app.bsky.graph.starterpack/3lpack";

/// The pack each profile row names, by the profile's DID.
async fn joined(client: &tokio_postgres::Client) -> Vec<(String, Option<String>)> {
    client
        .query(
            "SELECT did, joined_via_starter_pack_uri FROM profiles ORDER BY did",
            &[],
        )
        .await
        .expect("profiles")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn profiles_keep_the_starter_pack_they_joined_through() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    let client = pool.get().await.expect("connection");
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, \
               applied_at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO schema_migrations (version, name) \
             SELECT v, 'held back' FROM generate_series(24, 99) AS v",
        )
        .await
        .expect("holding migration 0024 back");
    skyhose_index::migrate(&pool)
        .await
        .expect("migrations 1-23");
    // Two profiles as the index wrote them before 0024: one joined through
    // the pack, one did not.
    let joiner = json!({"$type": "app.bsky.actor.profile", "displayName": "j",
        "joinedViaStarterPack": {"uri": PACK, "cid": "bafypack"},
        "createdAt": "2024-01-01T00:00:00.000Z"});
    let other = json!({"$type": "app.bsky.actor.profile", "displayName": "o",
        "createdAt": "2024-01-01T00:00:00.000Z"});
    for (did, record) in [("did:plc:joiner", &joiner), ("did:plc:other", &other)] {
        let uri = format!("at://{did}/app.bsky.actor.profile/self");
        client
            .execute(
                "INSERT INTO records (uri, did, collection, rkey, cid, rev, seq, live, record) \
                 VALUES ($1, $2, 'app.bsky.actor.profile', 'self', 'bafyprofile', '3lrev', 1, true, $3)",
                &[&uri, &did, record],
            )
            .await
            .expect("record");
        client
            .execute(
                "INSERT INTO profiles (uri, did, rkey, cid, display_name, created_at) \
                 VALUES ($1, $2, 'self', 'bafyprofile', 'x', '2024-01-01T00:00:00.000Z')",
                &[&uri, &did],
            )
            .await
            .expect("profile row");
    }
    client
        .batch_execute("DELETE FROM schema_migrations WHERE version = 24")
        .await
        .expect("releasing migration 0024");
    let report = skyhose_index::migrate(&pool).await.expect("migration 0024");
    assert_eq!(report.applied, vec![24]);
    client
        .batch_execute("DELETE FROM schema_migrations WHERE version > 24")
        .await
        .expect("releasing the later migrations");
    skyhose_index::migrate(&pool)
        .await
        .expect("later migrations");
    assert_eq!(
        joined(&client).await,
        vec![
            ("did:plc:joiner".to_owned(), Some(PACK.to_owned())),
            ("did:plc:other".to_owned(), None),
        ]
    );

    // A profile indexed now keeps the pack too.
    let data = json!({"repo": "did:plc:newcomer", "rev": "3lrev0000002",
        "ops": [{"action": "create", "path": "app.bsky.actor.profile/self", "cid": "bafynew",
                 "record": joiner}],
        "time": "2024-01-01T00:00:00Z"});
    env.push(&[Entry::new("commit", &data, 2)]).await;
    let summary = skyhose_index::run(env.config(1), CancellationToken::new())
        .await
        .expect("index run");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    assert_eq!(
        joined(&client).await,
        vec![
            ("did:plc:joiner".to_owned(), Some(PACK.to_owned())),
            ("did:plc:newcomer".to_owned(), Some(PACK.to_owned())),
            ("did:plc:other".to_owned(), None),
        ]
    );

    drop(client);
    drop(pool);
    env.cleanup().await;
}
