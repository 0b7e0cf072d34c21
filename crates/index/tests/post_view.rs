//! The `posts` view reads the parts of a post that `post_rows` no longer
//! projects (migrations 0026 and 0029) from the record text, by the rules the index
//! projected them with: text as SQL's `->>` gives it, JSON null kept as
//! the JSON value for JSON columns, the first present of `embed.X` and
//! `embed.media.X`, a blob's `ref.$link` or its legacy `cid`.

mod common;

use common::TestEnv;
use serde_json::{json, Value};

#[tokio::test]
async fn posts_read_their_parts_from_the_record() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    skyhose_index::migrate(&pool).await.expect("migrate");
    let client = pool.get().await.expect("connection");
    let records = [
        json!({"$type": "app.bsky.feed.post", "text": "hi", "langs": ["en"], "tags": null,
            "facets": [{"index": {"byteStart": 0, "byteEnd": 2}, "features": []}],
            "reply": {"root": {"uri": "at://did:plc:r/app.bsky.feed.post/1", "cid": "bafyroot"},
                      "parent": {"uri": "at://did:plc:r/app.bsky.feed.post/2", "cid": "bafyparent"}},
            "embed": {"$type": "app.bsky.embed.recordWithMedia",
                "record": {"record": {"uri": "at://did:plc:b/app.bsky.feed.post/1", "cid": "bafyq"}},
                "media": {"$type": "app.bsky.embed.external",
                    "external": {"uri": "https://x", "title": "t", "description": "d",
                        "thumb": {"$type": "blob", "ref": {"$link": "bafythumb"}}}}}}),
        json!({"$type": "app.bsky.feed.post", "text": "v",
            "embed": {"$type": "app.bsky.embed.video", "alt": "a", "video": {"cid": "bafylegacy"}}}),
        json!({"$type": "app.bsky.feed.post", "text": "i",
            "embed": {"$type": "app.bsky.embed.record",
                "record": {"uri": "at://did:plc:b/app.bsky.feed.post/3", "cid": "bafyr"}}}),
        json!({"$type": "app.bsky.feed.post", "text": "m",
            "embed": {"$type": "app.bsky.embed.recordWithMedia",
                "record": {"record": {"uri": "at://did:plc:b/app.bsky.feed.post/4", "cid": "bafys"}},
                "media": {"$type": "app.bsky.embed.images", "images": [{"alt": "x"}]}}}),
        json!({"$type": "app.bsky.feed.post", "text": "say \"hi\" \\ café 🎉\n"}),
        json!({"$type": "app.bsky.feed.post", "text": null}),
        json!({"$type": "app.bsky.feed.post", "text": ["not", "text"]}),
    ];
    for (n, record) in records.iter().enumerate() {
        client
            .execute(
                "INSERT INTO post_rows (uri, did, rkey, cid, live, record, actor, rkey_id) \
                 VALUES ($1, 'did:plc:a', $2, 'bafypost', true, $3::text::json, 1, $4)",
                &[
                    &format!("at://did:plc:a/app.bsky.feed.post/{n}"),
                    &n.to_string(),
                    &record.to_string(),
                    &-(n as i64 + 1),
                ],
            )
            .await
            .expect("insert a post row");
    }
    let read = |n: usize, column: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    &format!("SELECT {column}::text AS v FROM posts WHERE uri = $1"),
                    &[&format!("at://did:plc:a/app.bsky.feed.post/{n}")],
                )
                .await
                .expect(column)
                .get::<_, Option<String>>("v")
        }
    };
    let expected: [(usize, &str, Option<Value>); 20] = [
        (0, "text", Some(json!("hi"))),
        (4, "text", Some(json!("say \"hi\" \\ café 🎉\n"))),
        (5, "text", None),
        (6, "text", None),
        (0, "langs", Some(json!(["en"]))),
        (0, "tags", Some(Value::Null)),
        (
            0,
            "facets",
            Some(json!([{"index": {"byteStart": 0, "byteEnd": 2}, "features": []}])),
        ),
        (0, "reply_root_cid", Some(json!("bafyroot"))),
        (0, "reply_parent_cid", Some(json!("bafyparent"))),
        (0, "embed_external_title", Some(json!("t"))),
        (0, "embed_external_description", Some(json!("d"))),
        (0, "embed_external_thumb_cid", Some(json!("bafythumb"))),
        (0, "embed_record_cid", Some(json!("bafyq"))),
        (0, "embed_images", None),
        (1, "embed_video_cid", Some(json!("bafylegacy"))),
        (1, "embed_video_alt", Some(json!("a"))),
        (1, "embed_record_cid", None),
        (1, "facets", None),
        (2, "embed_record_cid", Some(json!("bafyr"))),
        (3, "embed_images", Some(json!([{"alt": "x"}]))),
    ];
    for (n, column, want) in expected {
        let got = read(n, column).await;
        // Text columns come back as text, JSON ones as JSON text.
        let got = got.map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)));
        assert_eq!(got, want, "post {n}, {column}");
    }
    drop(client);
    env.cleanup().await;
}
