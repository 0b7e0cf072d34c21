//! Replies a thread's gate disallows: marked when they are written, left
//! out of their parent's reply count and of reply notifications, exactly
//! under replays and deletions; a gate written after a reply does not
//! revisit it. And whom a reply notifies: the authors of the posts above
//! it, up to the fourth, and none above a reply the root's threadgate hides.

mod common;

use common::{Entry, TestEnv};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const OWNER: &str = "did:plc:owner";
const FOLLOWER: &str = "did:plc:follower";
const MENTIONED: &str = "did:plc:mentioned";
const LISTED: &str = "did:plc:listed";
const STRANGER: &str = "did:plc:stranger";

const CREATED: &str = "2024-01-01T00:00:00.000Z";

fn uri(did: &str, collection: &str, rkey: &str) -> String {
    format!("at://{did}/{collection}/{rkey}")
}

fn post(did: &str, rkey: &str) -> String {
    uri(did, "app.bsky.feed.post", rkey)
}

/// Builds commits with increasing seqs and revs.
#[derive(Default)]
struct Log {
    seq: i64,
    entries: Vec<Entry>,
}

impl Log {
    fn write(&mut self, did: &str, collection: &str, rkey: &str, record: Option<Value>) {
        self.seq += 1;
        let path = format!("{collection}/{rkey}");
        let mut op =
            json!({"action": if record.is_some() { "create" } else { "delete" }, "path": path});
        if let Some(record) = record {
            op["cid"] = json!(format!("bafy{}x", self.seq));
            op["record"] = record;
        }
        let data = json!({"repo": did, "rev": format!("{:013}", self.seq), "ops": [op],
            "time": "2024-01-01T00:00:00Z"});
        self.entries.push(Entry::new("commit", &data, self.seq));
    }

    fn post(&mut self, did: &str, rkey: &str, facets: Option<Value>) {
        let mut record = json!({"$type": "app.bsky.feed.post", "text": rkey, "createdAt": CREATED});
        if let Some(facets) = facets {
            record["facets"] = facets;
        }
        self.write(did, "app.bsky.feed.post", rkey, Some(record));
    }

    fn reply(&mut self, did: &str, rkey: &str, root: &str, parent: &str) {
        let record = json!({"$type": "app.bsky.feed.post", "text": rkey, "createdAt": CREATED,
            "reply": {"root": {"uri": root, "cid": "bafyroot"}, "parent": {"uri": parent, "cid": "bafyparent"}}});
        self.write(did, "app.bsky.feed.post", rkey, Some(record));
    }

    fn gate(&mut self, did: &str, rkey: &str, allow: Option<Value>) {
        let mut record = json!({"$type": "app.bsky.feed.threadgate", "post": post(did, rkey),
            "createdAt": CREATED});
        if let Some(allow) = allow {
            record["allow"] = allow;
        }
        self.write(did, "app.bsky.feed.threadgate", rkey, Some(record));
    }

    fn follow(&mut self, did: &str, rkey: &str, subject: &str) {
        let record =
            json!({"$type": "app.bsky.graph.follow", "subject": subject, "createdAt": CREATED});
        self.write(did, "app.bsky.graph.follow", rkey, Some(record));
    }

    fn take(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }
}

async fn index(env: &TestEnv, entries: &[Entry]) {
    env.push(entries).await;
    let summary = skyhose_index::run(env.config(1), CancellationToken::new())
        .await
        .expect("index run");
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
}

/// Each reply's mark and each post's reply count, and how many reply
/// notifications each record made.
struct State {
    client: deadpool_postgres::Object,
}

impl State {
    async fn violates(&self, uri: &str) -> bool {
        self.client
            .query_one(
                "SELECT violates_threadgate FROM post_rows WHERE uri = $1",
                &[&uri],
            )
            .await
            .expect("post row")
            .get("violates_threadgate")
    }

    async fn replies(&self, uri: &str) -> i64 {
        self.client
            .query_opt("SELECT c.replies FROM counts_of(did_id(split_part($1, '/', 3)), 'app.bsky.feed.post', rkey_id(split_part($1, '/', 5))) c", &[&uri])
            .await
            .expect("post counts")
            .map_or(0, |row| row.get("replies"))
    }

    async fn notifications(&self, uri: &str, reason: &str) -> i64 {
        self.client
            .query_one(
                "SELECT count(*) AS n FROM notifications WHERE record_uri = $1 AND reason = $2",
                &[&uri, &reason],
            )
            .await
            .expect("notifications")
            .get("n")
    }
}

/// A reply: author, rkey, root, parent, and whether the gate disallows it.
type Reply<'a> = (&'a str, &'a str, &'a String, String, bool);

/// Marks, reply notifications and counts after the replies of the test:
/// `roots` are the gated, the closed and the open root.
async fn check(state: &State, replies: &[Reply<'_>], roots: [&String; 3], gated_replies: i64) {
    for (did, rkey, _, _, violates) in replies {
        let reply = post(did, rkey);
        assert_eq!(state.violates(&reply).await, *violates, "{reply}");
        if *violates {
            assert_eq!(state.notifications(&reply, "reply").await, 0, "{reply}");
        }
    }
    let [root, closed, open] = roots;
    assert_eq!(state.replies(root).await, gated_replies);
    // The stranger's reply under the follower's is not counted there.
    assert_eq!(state.replies(&post(FOLLOWER, "3r1")).await, 0);
    assert_eq!(state.replies(closed).await, 1);
    assert_eq!(state.replies(open).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_the_gate_disallows_are_marked_and_not_counted() {
    let env = TestEnv::new();
    let mut log = Log::default();
    let root = post(OWNER, "3root");
    let closed = post(OWNER, "3closed");
    let open = post(OWNER, "3open");
    let list = uri(OWNER, "app.bsky.graph.list", "3list");
    // The root mentions MENTIONED; its gate lets in mentioned accounts, the
    // owner's followers and the members of the owner's list.
    log.post(
        OWNER,
        "3root",
        Some(json!([{"index": {"byteStart": 0, "byteEnd": 1},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": MENTIONED}]}])),
    );
    log.gate(
        OWNER,
        "3root",
        Some(json!([
            {"$type": "app.bsky.feed.threadgate#mentionRule"},
            {"$type": "app.bsky.feed.threadgate#followerRule"},
            {"$type": "app.bsky.feed.threadgate#listRule", "list": list},
        ])),
    );
    log.post(OWNER, "3closed", None);
    log.gate(OWNER, "3closed", Some(json!([])));
    log.post(OWNER, "3open", None);
    log.gate(OWNER, "3open", None);
    log.write(
        OWNER,
        "app.bsky.graph.list",
        "3list",
        Some(json!({"$type": "app.bsky.graph.list", "name": "l",
            "purpose": "app.bsky.graph.defs#curatelist", "createdAt": CREATED})),
    );
    log.write(
        OWNER,
        "app.bsky.graph.listitem",
        "3item",
        Some(
            json!({"$type": "app.bsky.graph.listitem", "list": list, "subject": LISTED,
            "createdAt": CREATED}),
        ),
    );
    log.follow(FOLLOWER, "3f", OWNER);
    // The owner following the stranger lets nobody in: the gate has no
    // following rule.
    log.follow(OWNER, "3f", STRANGER);
    let setup = log.take();

    // Replies: every rule's account, the owner, the stranger (directly and
    // under the follower's reply), and replies to the closed and open roots.
    let replies: [Reply<'_>; 9] = [
        (FOLLOWER, "3r1", &root, root.clone(), false),
        (MENTIONED, "3r2", &root, root.clone(), false),
        (LISTED, "3r3", &root, root.clone(), false),
        (OWNER, "3r4", &root, root.clone(), false),
        (STRANGER, "3r5", &root, root.clone(), true),
        (STRANGER, "3r6", &root, post(FOLLOWER, "3r1"), true),
        (FOLLOWER, "3r7", &closed, closed.clone(), true),
        (OWNER, "3r8", &closed, closed.clone(), false),
        (STRANGER, "3r9", &open, open.clone(), false),
    ];
    for (did, rkey, root, parent, _) in &replies {
        log.reply(did, rkey, root, parent);
    }
    let replied = log.take();
    // The setup and the replies in one batch: the gates, follows and list
    // items of the batch are seen by its replies.
    let mut all = setup.clone();
    all.extend(replied.iter().cloned());
    index(&env, &all).await;

    let pool = env.pool().await;
    let state = State {
        client: pool.get().await.expect("connection"),
    };
    check(&state, &replies, [&root, &closed, &open], 4).await;
    assert_eq!(
        state.notifications(&post(FOLLOWER, "3r1"), "reply").await,
        1
    );

    // Replayed, in order and then again in reverse: nothing changes.
    index(&env, &all).await;
    check(&state, &replies, [&root, &closed, &open], 4).await;
    let mut reversed = all.clone();
    reversed.reverse();
    index(&env, &reversed).await;
    check(&state, &replies, [&root, &closed, &open], 4).await;

    // Deleting a disallowed reply takes nothing back; deleting an allowed
    // one does.
    log.seq = all.len() as i64;
    log.write(STRANGER, "app.bsky.feed.post", "3r5", None);
    log.write(STRANGER, "app.bsky.feed.post", "3r6", None);
    log.write(MENTIONED, "app.bsky.feed.post", "3r2", None);
    let deletions = log.take();
    index(&env, &deletions).await;
    assert_eq!(state.replies(&root).await, 3);
    assert_eq!(state.replies(&post(FOLLOWER, "3r1")).await, 0);
    index(&env, &deletions).await;
    assert_eq!(state.replies(&root).await, 3);

    // A gate written after a reply does not revisit it; the next reply by
    // the same account is judged by it.
    log.reply(STRANGER, "3r10", &open, &open);
    index(&env, &log.take()).await;
    log.gate(OWNER, "3open", Some(json!([])));
    log.reply(STRANGER, "3r11", &open, &open);
    index(&env, &log.take()).await;
    assert!(!state.violates(&post(STRANGER, "3r10")).await);
    assert!(state.violates(&post(STRANGER, "3r11")).await);
    assert_eq!(state.replies(&open).await, 2);

    // A rewrite of a disallowed reply by an account the gate now lets in
    // clears the mark and counts it.
    log.follow(STRANGER, "3f", OWNER);
    index(&env, &log.take()).await;
    log.seq += 1;
    let record = json!({"$type": "app.bsky.feed.post", "text": "edited", "createdAt": CREATED,
        "reply": {"root": {"uri": root, "cid": "bafyroot"}, "parent": {"uri": root, "cid": "bafyparent"}}});
    let path = "app.bsky.feed.post/3r12";
    log.reply(STRANGER, "3r12", &closed, &closed);
    index(&env, &log.take()).await;
    assert!(state.violates(&post(STRANGER, "3r12")).await);
    assert_eq!(state.replies(&closed).await, 1);
    let data = json!({"repo": STRANGER, "rev": format!("{:013}", log.seq + 1),
        "ops": [{"action": "update", "path": path, "cid": "bafyedited", "record": record}],
        "time": "2024-01-01T00:00:00Z"});
    log.seq += 1;
    let update = vec![Entry::new("commit", &data, log.seq)];
    index(&env, &update).await;
    assert!(!state.violates(&post(STRANGER, "3r12")).await);
    assert_eq!(state.replies(&closed).await, 1);
    assert_eq!(state.replies(&root).await, 4);
    index(&env, &update).await;
    assert_eq!(state.replies(&root).await, 4);

    drop(state);
    drop(pool);
    env.cleanup().await;
}

/// The accounts notified of a record, with the reason, by DID.
async fn notified(state: &State, uri: &str) -> Vec<(String, String)> {
    state
        .client
        .query(
            "SELECT recipient_did, reason FROM notifications WHERE record_uri = $1 ORDER BY 1, 2",
            &[&uri],
        )
        .await
        .expect("notifications")
        .iter()
        .map(|row| (row.get("recipient_did"), row.get("reason")))
        .collect()
}

fn replied(dids: &[&str]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = dids
        .iter()
        .map(|did| (did.to_string(), "reply".to_owned()))
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_notifies_the_authors_of_the_posts_above_it() {
    const A: &str = "did:plc:a";
    const B: &str = "did:plc:b";
    const C: &str = "did:plc:c";
    const D: &str = "did:plc:d";
    const E: &str = "did:plc:e";
    let env = TestEnv::new();
    let mut log = Log::default();

    // A chain of replies under A's post: each notifies the authors of up
    // to four posts above it, each once, never its own author.
    let root = post(A, "3p");
    log.post(A, "3p", None);
    let chain = [(B, "3r1"), (C, "3r2"), (D, "3r3"), (E, "3r4"), (B, "3r5")];
    let mut parent = root.clone();
    for (did, rkey) in chain {
        log.reply(did, rkey, &root, &parent);
        parent = post(did, rkey);
    }
    // C mentions B in a reply to B's post: B is notified once, of the
    // mention.
    let record = json!({"$type": "app.bsky.feed.post", "text": "3r6", "createdAt": CREATED,
        "reply": {"root": {"uri": root, "cid": "bafyroot"}, "parent": {"uri": post(B, "3r1"), "cid": "bafyparent"}},
        "facets": [{"index": {"byteStart": 0, "byteEnd": 1},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": B}]}]});
    log.write(C, "app.bsky.feed.post", "3r6", Some(record));
    index(&env, &log.take()).await;
    let pool = env.pool().await;
    let state = State {
        client: pool.get().await.expect("connection"),
    };

    assert_eq!(notified(&state, &post(B, "3r1")).await, replied(&[A]));
    assert_eq!(notified(&state, &post(D, "3r3")).await, replied(&[A, B, C]));
    assert_eq!(
        notified(&state, &post(E, "3r4")).await,
        replied(&[A, B, C, D])
    );
    // Five above: A's root is beyond the fourth; B is above only once.
    assert_eq!(notified(&state, &post(B, "3r5")).await, replied(&[C, D, E]));
    assert_eq!(
        notified(&state, &post(C, "3r6")).await,
        vec![
            (A.to_owned(), "reply".to_owned()),
            (B.to_owned(), "mention".to_owned())
        ]
    );

    // A reply indexed before the posts above it: they notify of it when
    // they come.
    let other = post(A, "3q");
    log.post(A, "3q", None);
    log.reply(B, "3s1", &other, &other);
    log.reply(C, "3s2", &other, &post(B, "3s1"));
    let mut thread = log.take();
    let late = thread.pop().expect("the last reply");
    index(&env, std::slice::from_ref(&late)).await;
    assert_eq!(notified(&state, &post(C, "3s2")).await, replied(&[]));
    index(&env, &thread).await;
    assert_eq!(notified(&state, &post(C, "3s2")).await, replied(&[A, B]));
    assert_eq!(notified(&state, &post(B, "3s1")).await, replied(&[A]));
    // Replayed: nothing changes.
    thread.push(late);
    index(&env, &thread).await;
    assert_eq!(notified(&state, &post(C, "3s2")).await, replied(&[A, B]));

    drop(state);
    drop(pool);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_reply_ends_the_walk_of_reply_notifications() {
    const A: &str = "did:plc:a";
    const B: &str = "did:plc:b";
    const C: &str = "did:plc:c";
    const D: &str = "did:plc:d";
    let env = TestEnv::new();
    let mut log = Log::default();

    // A hides B's reply in the gate of A's thread: replies below it notify
    // B and no one above; a reply beside it still notifies A.
    let root = post(A, "3g");
    let hidden = post(B, "3h1");
    log.post(A, "3g", None);
    let gate = json!({"$type": "app.bsky.feed.threadgate", "post": root, "createdAt": CREATED,
        "hiddenReplies": [hidden]});
    log.write(A, "app.bsky.feed.threadgate", "3g", Some(gate));
    log.reply(B, "3h1", &root, &root);
    log.reply(C, "3h2", &root, &hidden);
    log.reply(D, "3h3", &root, &post(C, "3h2"));
    log.reply(C, "3h4", &root, &root);
    index(&env, &log.take()).await;
    let pool = env.pool().await;
    let state = State {
        client: pool.get().await.expect("connection"),
    };

    assert_eq!(notified(&state, &hidden).await, replied(&[A]));
    assert_eq!(notified(&state, &post(C, "3h2")).await, replied(&[B]));
    assert_eq!(notified(&state, &post(D, "3h3")).await, replied(&[B, C]));
    assert_eq!(notified(&state, &post(C, "3h4")).await, replied(&[A]));

    drop(state);
    drop(pool);
    env.cleanup().await;
}
