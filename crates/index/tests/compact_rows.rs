//! Likes and reposts (migration 0021) and follows (migration 0023) kept
//! compact read back exactly as written: the SQL renderers agree with the
//! Rust conversions for every TID and CID, and values without a compact
//! form (a key that is not a TID, a subject that is not a plain AT-URI,
//! CIDs of another form, a record the columns do not rebuild) come back
//! from the text the row keeps.

mod common;

use common::{Entry, TestEnv};
use serde_json::{json, Value};
use skyhose_proto::tid::Tid;
use skyhose_proto::Cid;

#[tokio::test]
async fn sql_renderers_agree_with_the_rust_forms() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    skyhose_index::migrate(&pool).await.expect("migrate");
    let client = pool.get().await.expect("connection");
    let mut rng = common::Rng::new(21);
    for n in 0..300u64 {
        let micros = (rng.next() % (1 << 53)) as i64;
        let tid = Tid::new(micros, (n % 1024) as u16);
        let value = tid.as_u64() as i64;
        let row = client
            .query_one(
                "SELECT tid_text($1) AS text, tid_int($2) AS value",
                &[&value, &tid.to_string()],
            )
            .await
            .expect("tid functions");
        assert_eq!(row.get::<_, String>("text"), tid.to_string());
        assert_eq!(row.get::<_, Option<i64>>("value"), Some(value));

        let cid = if n % 2 == 0 {
            Cid::for_dag_cbor(&rng.next().to_le_bytes())
        } else {
            Cid::for_raw(&rng.next().to_le_bytes())
        };
        let bytes = cid.to_bytes().to_vec();
        let row = client
            .query_one(
                "SELECT cid_text($1) AS text, cid_bytes($2) AS bytes",
                &[&bytes, &cid.to_string()],
            )
            .await
            .expect("cid functions");
        assert_eq!(row.get::<_, String>("text"), cid.to_string());
        assert_eq!(row.get::<_, Option<Vec<u8>>>("bytes"), Some(bytes));
    }
    for not_a_tid in ["self", "k222222222222", "3lbtbmvfj6k2", "3LBTBMVFJ6K2A"] {
        let row = client
            .query_one("SELECT tid_int($1) AS value", &[&not_a_tid])
            .await
            .expect("tid_int");
        assert_eq!(row.get::<_, Option<i64>>("value"), None, "{not_a_tid}");
    }
    drop(client);
    env.cleanup().await;
}

fn like(did: &str, rkey: &str, cid: &str, record: Value, seq: i64) -> Entry {
    create(did, "app.bsky.feed.like", rkey, cid, record, seq)
}

fn create(did: &str, collection: &str, rkey: &str, cid: &str, record: Value, seq: i64) -> Entry {
    let data = json!({"repo": did, "rev": format!("3l{seq:011}"), "ops": [
        {"action": "create", "path": format!("{collection}/{rkey}"),
         "cid": cid, "record": record}]});
    Entry::new("commit", &data, seq)
}

#[tokio::test]
async fn values_without_a_compact_form_read_back_from_the_text() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    skyhose_index::migrate(&pool).await.expect("migrate");
    let (alice, bob) = ("did:plc:compactalice", "did:plc:compactbob");
    let real = Cid::for_dag_cbor(b"subject").to_string();
    let own = Cid::for_dag_cbor(b"like").to_string();
    let post = format!("at://{bob}/app.bsky.feed.post/3lbtbmvfj6k2a");
    let generator = format!("at://{bob}/app.bsky.feed.generator/whats-hot");
    let repost = format!("at://{bob}/app.bsky.feed.repost/3lbtbmvfj6k2b");
    let strong = |uri: &str, cid: &str| json!({"uri": uri, "cid": cid});
    let record = |subject: Value| {
        json!({"$type": "app.bsky.feed.like", "createdAt": "2024-01-01T00:00:00.000Z",
               "subject": subject})
    };
    let mut with_via = record(strong(&post, &real));
    with_via["via"] = strong(&repost, &real);
    // (rkey, own CID, record): plain, with via, a generator (a key that is
    // not a TID), a key that is not a TID, a subject that is not a plain
    // AT-URI, a subject CID and an own CID of no binary form.
    let cases = [
        ("3lcompact2aaa", own.clone(), record(strong(&post, &real))),
        ("3lcompact2aab", own.clone(), with_via),
        (
            "3lcompact2aac",
            own.clone(),
            record(strong(&generator, &real)),
        ),
        ("not-a-tid", own.clone(), record(strong(&post, &real))),
        (
            "3lcompact2aad",
            own.clone(),
            record(strong(&format!("at://{bob}"), &real)),
        ),
        (
            "3lcompact2aae",
            own.clone(),
            record(strong(&post, "bafyshort")),
        ),
        (
            "3lcompact2aaf",
            "bafyown".to_owned(),
            record(strong(&post, &real)),
        ),
    ];
    let entries: Vec<Entry> = cases
        .iter()
        .enumerate()
        .map(|(n, (rkey, cid, record))| like(alice, rkey, cid, record.clone(), n as i64 + 1))
        .collect();
    env.push(&entries).await;
    let summary = skyhose_index::run(env.config(1), Default::default())
        .await
        .expect("index");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");

    let client = pool.get().await.expect("connection");
    for (rkey, cid, record) in &cases {
        let uri = format!("at://{alice}/app.bsky.feed.like/{rkey}");
        let row = client
            .query_one(
                "SELECT did, rkey, cid, subject_uri, subject_cid, via_uri, via_cid, \
                        record::text AS record FROM likes WHERE uri = $1",
                &[&uri],
            )
            .await
            .unwrap_or_else(|err| panic!("{uri}: {err}"));
        assert_eq!(row.get::<_, String>("did"), alice);
        assert_eq!(row.get::<_, String>("rkey"), *rkey);
        assert_eq!(row.get::<_, String>("cid"), *cid, "{uri}");
        let text = |path: &[&str]| {
            path.iter()
                .try_fold(record, |v, k| v.get(*k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(
            row.get::<_, Option<String>>("subject_uri"),
            text(&["subject", "uri"])
        );
        assert_eq!(
            row.get::<_, Option<String>>("subject_cid"),
            text(&["subject", "cid"])
        );
        assert_eq!(
            row.get::<_, Option<String>>("via_uri"),
            text(&["via", "uri"])
        );
        assert_eq!(
            row.get::<_, Option<String>>("via_cid"),
            text(&["via", "cid"])
        );
        let stored: Value =
            serde_json::from_str(&row.get::<_, String>("record")).expect("record JSON");
        assert_eq!(&stored, record, "{uri}");
        // Readers of given records find every one by its key.
        let found = client
            .query_one("SELECT cid FROM records_at(ARRAY[$1]) WHERE live", &[&uri])
            .await
            .unwrap_or_else(|err| panic!("records_at {uri}: {err}"));
        assert_eq!(found.get::<_, String>("cid"), *cid);
    }
    // Counts follow the subjects as written.
    let likes: i64 = client
        .query_one("SELECT c.likes FROM counts_of(did_id(split_part($1, '/', 3)), 'app.bsky.feed.post', rkey_id(split_part($1, '/', 5))) c", &[&post])
        .await
        .expect("post counts")
        .get("likes");
    assert_eq!(likes, 5);
    drop(client);
    env.cleanup().await;
}

#[tokio::test]
async fn follows_read_back_exactly_and_count_their_subjects() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    skyhose_index::migrate(&pool).await.expect("migrate");
    let (alice, bob, carol) = (
        "did:plc:compactfollowalice",
        "did:plc:compactfollowbob",
        "did:web:compact.example",
    );
    let own = Cid::for_dag_cbor(b"follow").to_string();
    let follow = |subject: &str| {
        json!({"$type": "app.bsky.graph.follow", "createdAt": "2024-01-01T00:00:00.000Z",
               "subject": subject})
    };
    let mut with_field = follow(carol);
    with_field["note"] = json!("kept as written");
    // (author, rkey, own CID, record, stored as text): a plain follow
    // (rebuilt by the views), one with another field, a key that is not a
    // TID, an own CID of no binary form, a follow of oneself; and one more
    // that is deleted afterwards.
    let cases = [
        (alice, "3lfollow2aaaa", own.clone(), follow(bob), false),
        (alice, "3lfollow2aaab", own.clone(), with_field, true),
        (bob, "not-a-tid", own.clone(), follow(alice), false),
        (
            carol,
            "3lfollow2aaac",
            "bafyown".to_owned(),
            follow(bob),
            false,
        ),
        (carol, "3lfollow2aaad", own.clone(), follow(carol), false),
    ];
    let mut entries: Vec<Entry> = cases
        .iter()
        .enumerate()
        .map(|(n, (did, rkey, cid, record, _))| {
            create(
                did,
                "app.bsky.graph.follow",
                rkey,
                cid,
                record.clone(),
                n as i64 + 1,
            )
        })
        .collect();
    let gone = format!("at://{bob}/app.bsky.graph.follow/3lfollow2aaae");
    entries.push(create(
        bob,
        "app.bsky.graph.follow",
        "3lfollow2aaae",
        &own,
        follow(carol),
        6,
    ));
    env.push(&entries).await;
    let summary = skyhose_index::run(env.config(1), Default::default())
        .await
        .expect("index");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    // Deleted by a later batch, so that its row is a tombstone of a live one.
    env.push(&[Entry::new(
        "commit",
        &json!({"repo": bob, "rev": format!("3l{:011}", 7), "ops": [
            {"action": "delete", "path": "app.bsky.graph.follow/3lfollow2aaae"}]}),
        7,
    )])
    .await;
    let summary = skyhose_index::run(env.config(1), Default::default())
        .await
        .expect("index");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");

    let client = pool.get().await.expect("connection");
    for (did, rkey, cid, record, kept) in &cases {
        let uri = format!("at://{did}/app.bsky.graph.follow/{rkey}");
        let row = client
            .query_one(
                "SELECT f.did, f.rkey, f.cid, f.subject_did, f.created_at, \
                        f.record::text AS record, r.record IS NOT NULL AS kept \
                 FROM follows f JOIN follow_rows r ON r.actor = f.actor AND r.rkey = f.rkey_id \
                 WHERE f.uri = $1",
                &[&uri],
            )
            .await
            .unwrap_or_else(|err| panic!("{uri}: {err}"));
        assert_eq!(row.get::<_, String>("did"), *did);
        assert_eq!(row.get::<_, String>("rkey"), *rkey);
        assert_eq!(row.get::<_, String>("cid"), *cid, "{uri}");
        assert_eq!(
            row.get::<_, Option<String>>("subject_did").as_deref(),
            record["subject"].as_str()
        );
        assert_eq!(
            row.get::<_, Option<String>>("created_at").as_deref(),
            record["createdAt"].as_str()
        );
        let stored: Value =
            serde_json::from_str(&row.get::<_, String>("record")).expect("record JSON");
        assert_eq!(&stored, record, "{uri}");
        assert_eq!(row.get::<_, bool>("kept"), *kept, "{uri}");
        let found = client
            .query_one("SELECT cid FROM records_at(ARRAY[$1]) WHERE live", &[&uri])
            .await
            .unwrap_or_else(|err| panic!("records_at {uri}: {err}"));
        assert_eq!(found.get::<_, String>("cid"), *cid);
    }
    // The deleted follow is a tombstone, which keeps its subject.
    let tombstone = client
        .query_one(
            "SELECT live, cid, record::text AS record, subject_did FROM follow_state WHERE uri = $1",
            &[&gone],
        )
        .await
        .expect("tombstone");
    assert!(!tombstone.get::<_, bool>("live"));
    assert_eq!(tombstone.get::<_, Option<String>>("cid"), None);
    assert_eq!(tombstone.get::<_, Option<String>>("record"), None);
    assert_eq!(
        tombstone.get::<_, Option<String>>("subject_did").as_deref(),
        Some(carol)
    );
    // Counts and notifications follow the subjects as written.
    let counts: Vec<(String, i64, i64)> = client
        .query(
            "SELECT did, follows, followers FROM actors WHERE did = ANY($1) ORDER BY did",
            &[&vec![alice, bob, carol]],
        )
        .await
        .expect("actor counts")
        .iter()
        .map(|r| (r.get("did"), r.get("follows"), r.get("followers")))
        .collect();
    assert_eq!(
        counts,
        vec![
            (alice.to_owned(), 2, 1),
            (bob.to_owned(), 1, 2),
            (carol.to_owned(), 2, 2),
        ]
    );
    let notified: Vec<(String, String)> = client
        .query(
            "SELECT recipient_did, author_did FROM all_notifications WHERE reason = 'follow' \
             ORDER BY seq",
            &[],
        )
        .await
        .expect("notifications")
        .iter()
        .map(|r| (r.get("recipient_did"), r.get("author_did")))
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        notified,
        vec![
            pair(bob, alice),
            pair(carol, alice),
            pair(alice, bob),
            pair(bob, carol)
        ]
    );
    drop(client);
    env.cleanup().await;
}

/// Migration 0023 on follows written by the schema before it: every row,
/// tombstones too, reads back through the views as it was.
#[tokio::test]
async fn migration_0023_converts_follows() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    // Only 0023: the later migrations stay held back. (Before this test
    // takes a connection: the helper and `migrate` need the pool's two.)
    common::migrate_before(&pool, 23, 23).await;
    let client = pool.get().await.expect("connection");
    let cid = Cid::for_dag_cbor(b"follow").to_string();
    let (alice, bob) = ("did:plc:migratedalice", "did:plc:migratedbob");
    let kept = r#"{"$type":"app.bsky.graph.follow","subject":"did:plc:migratedbob","createdAt":"2024-01-01T00:00:00Z"}"#;
    client
        .execute(
            "INSERT INTO follow_rows (uri, did, rkey, cid, subject_did, created_at, record, rev, seq, live) \
             VALUES ('at://' || $1 || '/app.bsky.graph.follow/3lbtbmvfj6k2a', $1, '3lbtbmvfj6k2a', $3, $2, \
                     '2024-01-01T00:00:00Z', NULL, '3lrev000000001', 1, true), \
                    ('at://' || $1 || '/app.bsky.graph.follow/odd', $1, 'odd', 'bafyown', $2, \
                     '2024-01-01T00:00:00Z', $4::text::json, '3lrev000000002', 2, true), \
                    ('at://' || $2 || '/app.bsky.graph.follow/3lbtbmvfj6k2b', $2, '3lbtbmvfj6k2b', NULL, $1, \
                     '2024-01-01T00:00:00Z', NULL, '3lrev000000003', 3, false)",
            &[&alice, &bob, &cid, &kept],
        )
        .await
        .expect("follows as the previous schema had them");
    let before: Vec<String> = client
        .query(
            "SELECT row(uri, did, rkey, cid, rev, seq, live, record::text)::text AS r \
             FROM all_records WHERE collection = 'app.bsky.graph.follow' ORDER BY uri",
            &[],
        )
        .await
        .expect("all_records before")
        .iter()
        .map(|r| r.get("r"))
        .collect();
    let report = skyhose_index::migrate(&pool).await.expect("migration 0023");
    assert_eq!(report.applied, vec![23]);
    let after: Vec<String> = client
        .query(
            "SELECT row(uri, did, rkey, cid, rev, seq, live, record::text)::text AS r \
             FROM all_records WHERE collection = 'app.bsky.graph.follow' ORDER BY uri",
            &[],
        )
        .await
        .expect("all_records after")
        .iter()
        .map(|r| r.get("r"))
        .collect();
    assert_eq!(after, before);
    assert_eq!(after.len(), 3);
    let subjects: Vec<(String, Option<String>, bool)> = client
        .query(
            "SELECT uri, subject_did, live FROM follow_state ORDER BY uri",
            &[],
        )
        .await
        .expect("follow_state")
        .iter()
        .map(|r| (r.get("uri"), r.get("subject_did"), r.get("live")))
        .collect();
    assert_eq!(
        subjects
            .iter()
            .map(|(_, s, _)| s.as_deref())
            .collect::<Vec<_>>(),
        vec![Some(bob), Some(bob), Some(alice)]
    );
    let notified: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM all_notifications WHERE reason = 'follow' AND recipient_did = $1",
            &[&bob],
        )
        .await
        .expect("notifications")
        .get("n");
    assert_eq!(notified, 2);
    drop(client);
    env.cleanup().await;
}

/// The CID of a record as its repo holds it: its canonical DAG-CBOR.
fn record_cid(record: &Value) -> String {
    let model = skyhose_proto::datamodel::from_json(record).expect("data model");
    Cid::for_dag_cbor(&skyhose_proto::cbor::encode(&model)).to_string()
}

/// Migration 0027: a like, repost or follow that the views rebuild keeps
/// neither its CID (when it is the record's own) nor its `createdAt` text
/// (when a timestamp writes it back), and every one reads back as written.
#[tokio::test]
async fn rebuilt_records_derive_their_cids_and_times() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    skyhose_index::migrate(&pool).await.expect("migrate");
    let client = pool.get().await.expect("connection");
    // DAG-CBOR text heads of every length form agree with the encoder.
    for len in [0usize, 1, 23, 24, 255, 256, 65_535, 65_536] {
        let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
        let ours = skyhose_proto::cbor::encode(&skyhose_proto::cbor::Value::from(text.as_str()));
        let row = client
            .query_one("SELECT cbor_text($1) AS b", &[&text])
            .await
            .expect("cbor_text");
        assert_eq!(row.get::<_, Vec<u8>>("b"), ours, "{len}");
    }

    let (alice, bob) = ("did:plc:derivedalice", "did:plc:derivedbob");
    let post = |rkey: &str| format!("at://{bob}/app.bsky.feed.post/{rkey}");
    let subject_cid = Cid::for_dag_cbor(b"post").to_string();
    let strong = |uri: String| json!({"uri": uri, "cid": subject_cid});
    let like_record = |created: &str, subject: Value| json!({"$type": "app.bsky.feed.like", "createdAt": created, "subject": subject});
    let long_rkey = "k".repeat(300);
    let mut with_via = like_record("2024-02-29T23:59:59.999Z", strong(post("3lbtbmvfj6k2a")));
    with_via["via"] = strong(format!("at://{bob}/app.bsky.feed.repost/3lbtbmvfj6k2b"));
    // (collection, rkey, record, CID and time both left out)
    let cases = [
        (
            "app.bsky.feed.like",
            "3lderived2aaa",
            like_record("2024-01-01T00:00:00.000Z", strong(post("3lbtbmvfj6k2a"))),
            true,
        ),
        ("app.bsky.feed.like", "3lderived2aab", with_via, true),
        (
            "app.bsky.feed.like",
            "3lderived2aac",
            like_record("2024-01-01T00:00:00.000Z", strong(post(&long_rkey))),
            true,
        ),
        (
            "app.bsky.feed.repost",
            "3lderived2aad",
            json!({"$type": "app.bsky.feed.repost", "createdAt": "1999-12-31T23:59:59.000Z",
                   "subject": strong(post("3lbtbmvfj6k2a"))}),
            true,
        ),
        (
            "app.bsky.graph.follow",
            "3lderived2aae",
            json!({"$type": "app.bsky.graph.follow", "createdAt": "2024-06-01T12:00:00.500Z",
                   "subject": bob}),
            true,
        ),
        // Times a timestamp does not write back: kept as text.
        (
            "app.bsky.feed.like",
            "3lderived2aaf",
            like_record("2024-01-01T00:00:00Z", strong(post("3lbtbmvfj6k2a"))),
            false,
        ),
        (
            "app.bsky.feed.like",
            "3lderived2aag",
            like_record(
                "2024-01-01T00:00:00.123456+00:00",
                strong(post("3lbtbmvfj6k2a")),
            ),
            false,
        ),
        (
            "app.bsky.graph.follow",
            "3lderived2aah",
            json!({"$type": "app.bsky.graph.follow", "createdAt": "not a time", "subject": bob}),
            false,
        ),
    ];
    let mut entries: Vec<Entry> = cases
        .iter()
        .enumerate()
        .map(|(n, (collection, rkey, record, _))| {
            create(
                alice,
                collection,
                rkey,
                &record_cid(record),
                record.clone(),
                n as i64 + 1,
            )
        })
        .collect();
    // A like whose CID is another record's: the row keeps it.
    let kept_cid = Cid::for_dag_cbor(b"not this record").to_string();
    let kept = like_record("2024-01-01T00:00:00.000Z", strong(post("3lbtbmvfj6k2c")));
    entries.push(like(alice, "3lderived2aai", &kept_cid, kept.clone(), 20));
    env.push(&entries).await;
    let summary = skyhose_index::run(env.config(1), Default::default())
        .await
        .expect("index");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");

    let expected = cases
        .iter()
        .map(|(c, rkey, record, derived)| {
            let left_out = (*derived, *derived, *derived);
            (*c, *rkey, record.clone(), record_cid(record), left_out)
        })
        .chain([(
            "app.bsky.feed.like",
            "3lderived2aai",
            kept,
            kept_cid,
            (false, true, true),
        )]);
    for (collection, rkey, record, cid, left_out) in expected {
        let uri = format!("at://{alice}/{collection}/{rkey}");
        let row = client
            .query_one(
                "SELECT cid, stored_cid, record::text AS record \
                 FROM records_at(ARRAY[$1]) WHERE live",
                &[&uri],
            )
            .await
            .unwrap_or_else(|err| panic!("{uri}: {err}"));
        assert_eq!(row.get::<_, String>("cid"), cid, "{uri}");
        // Where the row stores no CID, readers derive it from the record
        // as the view does, with the indexer's own function.
        let stored: Option<String> = row.get("stored_cid");
        assert_eq!(stored.is_none(), left_out.0, "{uri}");
        let derived = skyhose_proto::datamodel::record_cid(&row.get::<_, String>("record"))
            .map(|c| c.to_string());
        assert_eq!(stored.or(derived).as_deref(), Some(cid.as_str()), "{uri}");
        assert_eq!(
            row.get::<_, String>("record"),
            serde_json::to_string(&record).expect("json"),
            "{uri}"
        );
        let view = match collection {
            "app.bsky.feed.like" => "likes",
            "app.bsky.feed.repost" => "reposts",
            _ => "follows",
        };
        let row = client
            .query_one(
                &format!("SELECT created_at FROM {view} WHERE uri = $1"),
                &[&uri],
            )
            .await
            .unwrap_or_else(|err| panic!("{view} {uri}: {err}"));
        assert_eq!(
            row.get::<_, Option<String>>("created_at").as_deref(),
            record["createdAt"].as_str(),
            "{uri}"
        );
        let table = format!("{}_rows", view.trim_end_matches('s'));
        let row = client
            .query_one(
                &format!(
                    "SELECT t.cid IS NULL AS no_cid, t.record IS NULL AS no_text, \
                            t.created_at IS NOT NULL AS timed \
                     FROM {table} t JOIN dids a ON a.id = t.actor \
                     WHERE a.did = $1 AND t.rkey = rkey_id($2)"
                ),
                &[&alice, &rkey],
            )
            .await
            .unwrap_or_else(|err| panic!("{table} {uri}: {err}"));
        let (no_cid, no_text, timed): (bool, bool, bool) =
            (row.get("no_cid"), row.get("no_text"), row.get("timed"));
        assert_eq!((no_cid, no_text, timed), left_out, "{uri}");
    }
    drop(client);
    env.cleanup().await;
}

/// Migration 0027 on likes, reposts and follows written by the schema
/// before it: every row, tombstones too, reads back through the views as
/// it was, and rebuilt records stop storing the CIDs the views derive.
#[tokio::test]
async fn migration_0027_converts_times_and_cids() {
    let env = TestEnv::new();
    let pool = env.created_pool().await;
    common::migrate_before(&pool, 27, 27).await;
    let client = pool.get().await.expect("connection");
    let (alice, bob) = ("did:plc:migrated27alice", "did:plc:migrated27bob");
    let post = format!("at://{bob}/app.bsky.feed.post/3lbtbmvfj6k2a");
    let subject_cid = Cid::for_dag_cbor(b"post").to_string();
    let like = |created: &str| {
        json!({"$type": "app.bsky.feed.like", "createdAt": created,
               "subject": {"cid": subject_cid, "uri": post}})
    };
    let follow = |created: &str| json!({"$type": "app.bsky.graph.follow", "createdAt": created, "subject": bob});
    client
        .execute("INSERT INTO dids (did) VALUES ($1), ($2)", &[&alice, &bob])
        .await
        .expect("dids");
    // (rkey, createdAt, own CID, live): the derived CID, a time kept as
    // text, another CID, a tombstone.
    let plain = like("2024-01-01T00:00:00.000Z");
    let likes = [
        (
            "3lbtbmvfj6k2a",
            "2024-01-01T00:00:00.000Z",
            record_cid(&plain),
            true,
        ),
        (
            "3lbtbmvfj6k2b",
            "2024-01-01T00:00:00Z",
            record_cid(&like("2024-01-01T00:00:00Z")),
            true,
        ),
        (
            "3lbtbmvfj6k2c",
            "2024-01-01T00:00:00.000Z",
            Cid::for_dag_cbor(b"x").to_string(),
            true,
        ),
        (
            "3lbtbmvfj6k2d",
            "2024-01-01T00:00:00.000Z",
            String::new(),
            false,
        ),
    ];
    for (n, (rkey, created, cid, live)) in likes.iter().enumerate() {
        client
            .execute(
                "INSERT INTO like_rows (actor, rkey, subject_actor, subject_collection, subject_rkey, \
                   subject_cid, cid, rev, seq, live, created_at) \
                 VALUES (did_id($1), rkey_id($2), ref_actor($3), ref_collection($3), ref_rkey($3), \
                   cid_bytes($4), cid_bytes(NULLIF($5, '')), $6, $7, $8, $9)",
                &[&alice, rkey, &post, &subject_cid, cid, &format!("3lrev00000000{n}"), &(n as i64), live, created],
            )
            .await
            .expect("likes as the previous schema had them");
    }
    let followed = follow("2024-01-01T00:00:00.000Z");
    for (rkey, created, cid) in [
        (
            "3lbtbmvfj6k2e",
            "2024-01-01T00:00:00.000Z",
            record_cid(&followed),
        ),
        ("3lbtbmvfj6k2f", "2024", record_cid(&follow("2024"))),
    ] {
        client
            .execute(
                "INSERT INTO follow_rows (actor, subject_actor, rkey, cid, rev, seq, live, created_at) \
                 VALUES (did_id($1), did_id($2), rkey_id($3), cid_bytes($4), '3lrev0000000f', 9, true, $5)",
                &[&alice, &bob, &rkey, &cid, &created],
            )
            .await
            .expect("follows as the previous schema had them");
    }
    const ROWS: &str = "SELECT row(uri, did, rkey, cid, rev, seq, live, record::text)::text AS r \
                        FROM all_records WHERE collection <> 'app.bsky.feed.post' ORDER BY uri";
    const STATES: &str = "SELECT row(l.*)::text AS r FROM like_state l \
                          UNION ALL SELECT row(f.*)::text FROM follow_state f ORDER BY 1";
    let read = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query(sql, &[])
                .await
                .expect(sql)
                .iter()
                .map(|r| r.get::<_, String>("r"))
                .collect::<Vec<String>>()
        }
    };
    let (rows, states) = (read(ROWS).await, read(STATES).await);
    let report = skyhose_index::migrate(&pool).await.expect("migration 0027");
    assert_eq!(report.applied, vec![27]);
    assert_eq!(read(ROWS).await, rows);
    assert_eq!(read(STATES).await, states);
    assert_eq!(rows.len(), 6);
    let stored: Vec<(bool, bool)> = client
        .query(
            "SELECT cid IS NULL AS no_cid, record IS NULL AS no_text FROM like_rows ORDER BY rkey",
            &[],
        )
        .await
        .expect("like rows")
        .iter()
        .map(|r| (r.get("no_cid"), r.get("no_text")))
        .collect();
    assert_eq!(
        stored,
        vec![(true, true), (false, false), (false, true), (true, true)]
    );
    drop(client);
    env.cleanup().await;
}
