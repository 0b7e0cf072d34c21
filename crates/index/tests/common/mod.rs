//! Shared by the integration tests: a throwaway database and stream per test,
//! a small deterministic event generator and a sequential reference model.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use skyhose_index::IndexConfig;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

pub struct TestEnv {
    pub database_url: String,
    pub stream_key: String,
    pub dead_letter_key: String,
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestEnv {
    pub fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let suffix = unique_suffix();
        TestEnv {
            database_url: format!("postgres://postgres@127.0.0.1:5432/skyhose_test_{suffix}"),
            stream_key: format!("test:{suffix}:events"),
            dead_letter_key: format!("test:{suffix}:dead-letters"),
        }
    }

    pub fn config(&self, workers: usize) -> IndexConfig {
        let mut cfg = IndexConfig::new(REDIS_URL, &self.database_url);
        cfg.stream_key = self.stream_key.clone();
        cfg.dead_letter_key = self.dead_letter_key.clone();
        cfg.group = "test-group".into();
        cfg.consumer = format!("test-{}", unique_suffix());
        cfg.workers = workers;
        cfg.batch_size = 200;
        cfg.block = Duration::from_millis(100);
        // Long enough that a batch still being applied on a loaded machine
        // is not taken for a dead consumer's (five takeovers dead-letter it).
        cfg.claim_idle = Duration::from_secs(2);
        cfg.exit_when_drained = true;
        cfg
    }

    pub async fn redis(&self) -> MultiplexedConnection {
        redis::Client::open(REDIS_URL)
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    pub async fn push(&self, entries: &[Entry]) {
        let mut conn = self.redis().await;
        for chunk in entries.chunks(1000) {
            let mut pipe = redis::pipe();
            for entry in chunk {
                let cmd = pipe.cmd("XADD").arg(&self.stream_key).arg("*");
                for (field, value) in &entry.fields {
                    cmd.arg(field).arg(value);
                }
                cmd.ignore();
            }
            pipe.query_async::<()>(&mut conn).await.expect("XADD");
        }
    }

    pub async fn pool(&self) -> skyhose_index::Pool {
        skyhose_index::connect_pool(&self.database_url, 2).expect("pool")
    }

    /// A pool on the test's database, created first (the index run creates
    /// it otherwise), with no schema yet.
    pub async fn created_pool(&self) -> skyhose_index::Pool {
        skyhose_index::ensure_database(&self.database_url)
            .await
            .expect("database");
        self.pool().await
    }

    pub async fn cleanup(self) {
        let mut conn = self.redis().await;
        let _: () = redis::cmd("DEL")
            .arg(&self.stream_key)
            .arg(&self.dead_letter_key)
            .query_async(&mut conn)
            .await
            .expect("DEL");
        skyhose_index::drop_database(&self.database_url)
            .await
            .expect("drop database");
    }
}

/// The profile and chat declaration fields that actor rows keep for profile
/// views equal those records' projection rows; returns how many of each
/// record were compared.
pub async fn assert_actor_rows_mirror_records(pool: &skyhose_index::Pool) -> (i64, i64) {
    let client = pool.get().await.expect("connection");
    let row = client
        .query_one(
            "SELECT count(p.uri), \
                    count(*) FILTER (WHERE (a.display_name, a.description, a.avatar_cid, a.banner_cid, \
                                            a.pinned_post_uri, a.pinned_post_cid, a.profile_created_at, \
                                            a.profile_indexed_at IS NOT NULL) \
                       IS DISTINCT FROM (p.display_name, p.description, p.avatar_cid, p.banner_cid, \
                                         p.pinned_post_uri, p.pinned_post_cid, p.created_at, p.uri IS NOT NULL)), \
                    count(d.uri), \
                    count(*) FILTER (WHERE a.chat_allow_incoming IS DISTINCT FROM d.allow_incoming) \
             FROM actors a \
             LEFT JOIN profiles p ON p.uri = 'at://' || a.did || '/app.bsky.actor.profile/self' \
             LEFT JOIN chat_declarations d \
               ON d.uri = 'at://' || a.did || '/chat.bsky.actor.declaration/self'",
            &[],
        )
        .await
        .expect("comparing actor rows with their records");
    let (profiles, profiles_wrong): (i64, i64) = (row.get(0), row.get(1));
    let (chats, chats_wrong): (i64, i64) = (row.get(2), row.get(3));
    assert!(profiles > 0, "no profiles to compare");
    assert_eq!(
        profiles_wrong, 0,
        "actor rows whose profile fields differ from the profile"
    );
    assert_eq!(
        chats_wrong, 0,
        "actor rows whose chat field differs from the declaration"
    );
    (profiles, chats)
}

/// One stream entry's fields, in order.
#[derive(Debug, Clone)]
pub struct Entry {
    pub fields: Vec<(String, String)>,
}

impl Entry {
    pub fn new(kind: &str, data: &Value, seq: i64) -> Self {
        Entry {
            fields: vec![
                ("type".into(), kind.into()),
                ("data".into(), data.to_string()),
                ("seq".into(), seq.to_string()),
            ],
        }
    }
}

/// A tiny deterministic PRNG (xorshift), enough to vary the workload.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Generates `n` events over a small network with every feature the index
/// counts: posts, replies, quotes, likes and reposts (with `via`), follows,
/// updates, deletes, handle changes, deactivations and account deletions.
pub fn generate(n: usize, seed: u64) -> Vec<Entry> {
    generate_among(n, seed, 40)
}

/// Like [`generate`], over `actors` accounts.
pub fn generate_among(n: usize, seed: u64, actors: usize) -> Vec<Entry> {
    let mut rng = Rng::new(seed);
    let dids: Vec<String> = (0..actors).map(|i| format!("did:plc:user{i:06}")).collect();
    let mut live: BTreeMap<String, Vec<String>> = BTreeMap::new(); // collection -> uris (may be stale)
    let mut entries = Vec::with_capacity(n);
    let mut rkey_counter = 0u64;
    let mut seq = 0i64;
    // Some draws produce nothing (no target yet); seqs then have gaps, as on the relay.
    while entries.len() < n {
        seq += 1;
        let did = &dids[rng.below(dids.len())];
        let rev = format!("{:013}", seq);
        let roll = rng.below(100);
        if roll < 3 {
            let handle = format!("u{}.sim.test", rng.below(1000));
            entries.push(Entry::new(
                "identity",
                &json!({"did": did, "handle": handle}),
                seq,
            ));
            continue;
        }
        if roll < 5 {
            let status = ["active", "deactivated", "takendown", "deleted"][rng.below(4)];
            let data = if status == "active" {
                json!({"did": did, "active": true})
            } else {
                json!({"did": did, "active": false, "status": status})
            };
            entries.push(Entry::new("account", &data, seq));
            continue;
        }
        let pick = |rng: &mut Rng,
                    live: &BTreeMap<String, Vec<String>>,
                    collection: &str|
         -> Option<String> {
            live.get(collection)
                .filter(|v| !v.is_empty())
                .map(|v| v[rng.below(v.len())].clone())
        };
        rkey_counter += 1;
        let rkey = format!("3k{rkey_counter:011}");
        let (collection, action, record, path_rkey) = if roll < 35 {
            let mut post = json!({"$type": "app.bsky.feed.post", "text": format!("post {seq}"), "createdAt": "2024-01-01T00:00:00.000Z"});
            if let (true, Some(parent)) = (
                rng.below(3) == 0,
                pick(&mut rng, &live, "app.bsky.feed.post"),
            ) {
                post["reply"] = json!({"root": {"uri": parent, "cid": "bafyroot"}, "parent": {"uri": parent, "cid": "bafyparent"}});
            }
            if let (true, Some(quoted)) = (
                rng.below(5) == 0,
                pick(&mut rng, &live, "app.bsky.feed.post"),
            ) {
                post["embed"] = if rng.below(2) == 0 {
                    json!({"$type": "app.bsky.embed.record", "record": {"uri": quoted, "cid": "bafyq"}})
                } else {
                    json!({"$type": "app.bsky.embed.recordWithMedia",
                           "record": {"$type": "app.bsky.embed.record", "record": {"uri": quoted, "cid": "bafyq"}},
                           "media": {"$type": "app.bsky.embed.images", "images": []}})
                };
            }
            if rng.below(4) == 0 {
                let mentioned = &dids[rng.below(dids.len())];
                post["facets"] = json!([{"index": {"byteStart": 0, "byteEnd": 1},
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": mentioned}]}]);
            }
            ("app.bsky.feed.post", "create", Some(post), rkey)
        } else if roll < 60 {
            let Some(subject) = pick(&mut rng, &live, "app.bsky.feed.post") else {
                continue;
            };
            let collection = if rng.below(3) == 0 {
                "app.bsky.feed.repost"
            } else {
                "app.bsky.feed.like"
            };
            let mut record = json!({"$type": collection, "subject": {"uri": subject, "cid": "bafys"}, "createdAt": "2024-01-01T00:00:00Z"});
            if let (true, Some(via)) = (
                rng.below(4) == 0,
                pick(&mut rng, &live, "app.bsky.feed.repost"),
            ) {
                record["via"] = json!({"uri": via, "cid": "bafyv"});
            }
            (collection, "create", Some(record), rkey)
        } else if roll < 75 {
            let subject = &dids[rng.below(dids.len())];
            (
                "app.bsky.graph.follow",
                "create",
                Some(
                    json!({"$type": "app.bsky.graph.follow", "subject": subject, "createdAt": "2024-01-01T00:00:00Z"}),
                ),
                rkey,
            )
        } else if roll < 79 && rng.below(3) == 0 {
            let allow = ["all", "following", "none"][rng.below(3)];
            (
                "chat.bsky.actor.declaration",
                "create",
                Some(json!({"$type": "chat.bsky.actor.declaration", "allowIncoming": allow})),
                "self".to_owned(),
            )
        } else if roll < 80 {
            let profile = json!({"$type": "app.bsky.actor.profile", "displayName": format!("User {seq}"),
                "avatar": {"$type": "blob", "ref": {"$link": "bafkavatar"}, "mimeType": "image/png", "size": 10}});
            (
                "app.bsky.actor.profile",
                "update",
                Some(profile),
                "self".to_owned(),
            )
        } else if roll < 82 {
            (
                "com.example.unknown.thing",
                "create",
                Some(json!({"$type": "com.example.unknown.thing", "x": seq})),
                rkey,
            )
        } else {
            // Delete one of this actor's records, or an update of a post.
            let collection = [
                "app.bsky.feed.post",
                "app.bsky.feed.like",
                "app.bsky.feed.repost",
                "app.bsky.graph.follow",
                "app.bsky.actor.profile",
                "chat.bsky.actor.declaration",
            ][rng.below(6)];
            let Some(uri) = pick(&mut rng, &live, collection) else {
                continue;
            };
            let Some(rest) = uri.strip_prefix(&format!("at://{did}/")) else {
                continue;
            };
            let rkey = rest.rsplit('/').next().unwrap_or_default().to_owned();
            if collection == "app.bsky.feed.post" && rng.below(3) == 0 {
                let post = json!({"$type": "app.bsky.feed.post", "text": format!("edited {seq}"), "createdAt": "2024-01-01T00:00:00Z"});
                (collection, "update", Some(post), rkey)
            } else {
                (collection, "delete", None, rkey)
            }
        };
        let path = format!("{collection}/{path_rkey}");
        let uri = format!("at://{did}/{path}");
        let mut op = json!({"action": action, "path": path});
        if let Some(record) = record {
            op["cid"] = json!(format!("bafy{seq}x"));
            op["record"] = record;
            live.entry(collection.to_owned()).or_default().push(uri);
        }
        let data = json!({"repo": did, "rev": rev, "ops": [op], "time": "2024-01-01T00:00:00Z"});
        entries.push(Entry::new("commit", &data, seq));
    }
    entries
}

/// The expected snapshot: `entries` applied one by one, in order.
pub fn model(entries: &[Entry]) -> Value {
    let mut records: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut actors: BTreeMap<String, (Option<String>, String)> = BTreeMap::new();
    for entry in entries {
        let kind = &entry.fields[0].1;
        let Ok(data) = serde_json::from_str::<Value>(&entry.fields[1].1) else {
            continue;
        };
        match kind.as_str() {
            "identity" => {
                let did = data["did"].as_str().unwrap_or_default().to_owned();
                actors.entry(did).or_insert((None, "active".into())).0 =
                    data["handle"].as_str().map(str::to_owned);
            }
            "account" => {
                let did = data["did"].as_str().unwrap_or_default().to_owned();
                let status = if data["active"].as_bool() == Some(true) {
                    "active".to_owned()
                } else {
                    data["status"].as_str().unwrap_or("deactivated").to_owned()
                };
                if status == "deleted" {
                    let prefix = format!("at://{did}/");
                    records.retain(|uri, _| !uri.starts_with(&prefix));
                }
                actors.entry(did).or_insert((None, "active".into())).1 = status;
            }
            "commit" => {
                let did = data["repo"].as_str().unwrap_or_default().to_owned();
                for op in data["ops"].as_array().into_iter().flatten() {
                    let uri = format!("at://{did}/{}", op["path"].as_str().unwrap_or_default());
                    if op["action"] == "delete" {
                        records.remove(&uri);
                    } else {
                        records.insert(
                            uri,
                            (
                                op["cid"].as_str().unwrap_or_default().to_owned(),
                                op["record"].clone(),
                            ),
                        );
                    }
                }
                actors.entry(did).or_insert((None, "active".into()));
            }
            _ => {}
        }
    }
    let mut followers: BTreeMap<String, i64> = BTreeMap::new();
    let mut follows: BTreeMap<String, i64> = BTreeMap::new();
    let mut post_count: BTreeMap<String, i64> = BTreeMap::new();
    let mut posts: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for uri in records
        .keys()
        .filter(|u| u.contains("/app.bsky.feed.post/"))
    {
        posts.insert(uri.clone(), [0; 4]);
    }
    let owner = |uri: &str| {
        uri.trim_start_matches("at://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let bump = |posts: &mut BTreeMap<String, [i64; 4]>, uri: Option<&str>, field: usize| {
        if let Some(counts) = uri.and_then(|u| posts.get_mut(u)) {
            counts[field] += 1;
        }
    };
    for (uri, (_, record)) in &records {
        match record["$type"].as_str().unwrap_or_default() {
            "app.bsky.feed.like" => bump(&mut posts, record["subject"]["uri"].as_str(), 0),
            "app.bsky.feed.repost" => bump(&mut posts, record["subject"]["uri"].as_str(), 1),
            "app.bsky.feed.post" => {
                *post_count.entry(owner(uri)).or_default() += 1;
                bump(&mut posts, record["reply"]["parent"]["uri"].as_str(), 2);
                let quoted = match record["embed"]["$type"].as_str() {
                    Some("app.bsky.embed.record") => record["embed"]["record"]["uri"].as_str(),
                    Some("app.bsky.embed.recordWithMedia") => {
                        record["embed"]["record"]["record"]["uri"].as_str()
                    }
                    _ => None,
                };
                bump(&mut posts, quoted, 3);
            }
            "app.bsky.graph.follow" => {
                *follows.entry(owner(uri)).or_default() += 1;
                *followers
                    .entry(record["subject"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    let dids: BTreeSet<&String> = actors.keys().collect();
    json!({
        "records": records.iter().map(|(uri, (cid, _))| (uri.clone(), json!(cid))).collect::<serde_json::Map<_, _>>(),
        "actors": dids.iter().map(|did| {
            let (handle, status) = &actors[*did];
            ((*did).clone(), json!({"handle": handle, "status": status,
                "followers": followers.get(*did).copied().unwrap_or(0),
                "follows": follows.get(*did).copied().unwrap_or(0),
                "posts": post_count.get(*did).copied().unwrap_or(0)}))
        }).collect::<serde_json::Map<_, _>>(),
        "posts": posts.iter().map(|(uri, c)| (uri.clone(), json!({"likes": c[0], "reposts": c[1], "replies": c[2], "quotes": c[3]}))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Reports the first differences between two snapshots, for readable failures.
pub fn diff(expected: &Value, actual: &Value) -> String {
    let mut out = Vec::new();
    for section in ["records", "actors", "posts"] {
        let (Some(e), Some(a)) = (expected[section].as_object(), actual[section].as_object())
        else {
            out.push(format!("{section}: missing"));
            continue;
        };
        for (key, value) in e {
            match a.get(key) {
                None => out.push(format!("{section}: missing {key} (expected {value})")),
                Some(got) if got != value => {
                    out.push(format!("{section}: {key}: expected {value}, got {got}"))
                }
                _ => {}
            }
        }
        for key in a.keys().filter(|k| !e.contains_key(*k)) {
            out.push(format!("{section}: unexpected {key} = {}", a[key]));
        }
    }
    out.truncate(20);
    out.join("\n")
}

/// Applies the migrations before `version` only: marking it and the later
/// ones as done first makes `migrate` skip them, and removing the marks of
/// `version` to `last` lets those run at the next `migrate`.
#[allow(dead_code)]
pub async fn migrate_before(pool: &skyhose_index::Pool, version: i32, last: i32) {
    let client = pool.get().await.expect("connection");
    client
        .batch_execute(&format!(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, \
               applied_at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO schema_migrations (version, name) \
             SELECT v, 'held back' FROM generate_series({version}, 99) AS v"
        ))
        .await
        .expect("holding migrations back");
    skyhose_index::migrate(pool)
        .await
        .expect("the migrations before");
    client
        .batch_execute(&format!(
            "DELETE FROM schema_migrations WHERE version BETWEEN {version} AND {last}"
        ))
        .await
        .expect("releasing the held-back migrations");
}
