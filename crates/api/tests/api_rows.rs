//! Rows the code cannot read (a NULL where it expects a value, a column of
//! another type: the schema drifted from the code) fail the request with a
//! 500 and an XRPC body, and the server keeps serving.

mod common;

use common::Server;

const DID: &str = "did:plc:nullcounts";

/// A database of its own, with the index's schema and one actor whose
/// follower count is NULL (which the schema itself forbids).
async fn corrupted_database() -> String {
    let url = format!(
        "postgres://postgres@127.0.0.1:5432/skyhose_apirows_{}",
        std::process::id()
    );
    let _ = skyhose_index::drop_database(&url).await;
    skyhose_index::ensure_database(&url).await.unwrap();
    let pool = skyhose_index::connect_pool(&url, 1).unwrap();
    skyhose_index::migrate(&pool).await.unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO actors (did, handle, indexed) VALUES ('{DID}', 'nullcounts.test', true); \
             ALTER TABLE actors ALTER COLUMN followers DROP NOT NULL; \
             UPDATE actors SET followers = NULL WHERE did = '{DID}';"
        ))
        .await
        .unwrap();
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_where_a_value_is_expected_answers_500_with_an_xrpc_body() {
    let url = corrupted_database().await;
    let server = Server::start_on(&url, |_| {}).await;

    let (status, body) = server
        .get("app.bsky.actor.getProfile", &format!("actor={DID}"))
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "InternalServerError", "{body}");
    assert!(body["message"].is_string(), "{body}");

    // Through the batched loaders too, and the server still answers.
    let (status, body) = server
        .get("app.bsky.actor.getProfiles", &format!("actors={DID}"))
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "InternalServerError", "{body}");
    let (status, body) = server
        .get("app.bsky.actor.getProfile", "actor=did:plc:someoneelse")
        .await;
    assert_eq!(status, 400, "{body}");

    drop(server);
    let _ = skyhose_index::drop_database(&url).await;
}
