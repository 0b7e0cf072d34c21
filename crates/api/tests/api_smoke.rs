//! The first endpoints over a simulated index: responses validate against the
//! official lexicons and agree with the simulator's ground truth.

mod common;

use common::{fixture, validate_with_official_lexicons, Server};
use serde_json::Value;

fn enc(s: &str) -> String {
    form_urlencoded_encode(s)
}

fn form_urlencoded_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_feeds_and_threads_match_truth_and_lexicons() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let mut cases: Vec<(String, String, Value)> = Vec::new();

    // The most-followed active actor and one of its posts with replies.
    let (did, actor) = fx
        .truth
        .actors
        .iter()
        .filter(|(_, a)| a.status == "active")
        .max_by_key(|(_, a)| a.followers)
        .expect("an active actor");
    let (status, profile) = server
        .get("app.bsky.actor.getProfile", &format!("actor={}", enc(did)))
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["followersCount"], actor.followers);
    assert_eq!(profile["followsCount"], actor.follows);
    assert_eq!(profile["postsCount"], actor.posts);
    cases.push((
        "app.bsky.actor.getProfile".into(),
        did.clone(),
        profile.clone(),
    ));
    if let Some(handle) = &actor.handle {
        let (status, by_handle) = server
            .get(
                "app.bsky.actor.getProfile",
                &format!("actor={}", enc(handle)),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(by_handle["did"], did.as_str());
    }

    let (status, feed) = server
        .get(
            "app.bsky.feed.getAuthorFeed",
            &format!("actor={}&limit=20", enc(did)),
        )
        .await;
    assert_eq!(status, 200, "{feed}");
    cases.push((
        "app.bsky.feed.getAuthorFeed".into(),
        did.clone(),
        feed.clone(),
    ));

    let (uri, counts) = fx
        .truth
        .posts
        .iter()
        .max_by_key(|(_, c)| c.replies)
        .expect("a post");
    let (status, thread) = server
        .get("app.bsky.feed.getPostThread", &format!("uri={}", enc(uri)))
        .await;
    assert_eq!(status, 200, "{thread}");
    cases.push((
        "app.bsky.feed.getPostThread".into(),
        uri.clone(),
        thread.clone(),
    ));
    let post = &thread["thread"]["post"];
    assert_eq!(post["replyCount"], counts.replies);
    assert_eq!(post["likeCount"], counts.likes);

    let (status, posts) = server
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    assert_eq!(status, 200);
    cases.push(("app.bsky.feed.getPosts".into(), uri.clone(), posts));

    validate_with_official_lexicons(&cases);
}

/// The official client (`@atproto/api`, which checks responses against its
/// own bundled lexicons) gets typed objects back from us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_reads_profiles_feeds_threads_followers_and_search() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let (did, actor) = fx
        .truth
        .actors
        .iter()
        .filter(|(_, a)| a.status == "active" && a.followers > 0 && a.followers <= 100)
        .max_by_key(|(_, a)| a.followers)
        .expect("an active actor with followers");
    let (uri, counts) = fx
        .truth
        .posts
        .iter()
        .max_by_key(|(_, c)| c.replies)
        .expect("a post");
    let (_, posts) = server
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    let text = posts["posts"][0]["record"]["text"].as_str().unwrap_or("");
    let term = text
        .split_whitespace()
        .filter(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .max_by_key(|w| w.len())
        .unwrap_or("post")
        .to_owned();

    common::ensure_node_modules();
    let out = std::process::Command::new("node")
        .arg(common::js_dir().join("client.mjs"))
        .args([&server.url(), did.as_str(), uri.as_str(), term.as_str()])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    assert_eq!(summary["profile"]["did"], did.as_str());
    assert_eq!(summary["profile"]["followersCount"], actor.followers);
    assert_eq!(summary["profile"]["postsCount"], actor.posts);
    assert_eq!(summary["thread"]["uri"], uri.as_str());
    assert!(summary["thread"]["replies"].as_u64().unwrap_or(0) <= counts.replies);
    // followersCount counts every live follow; the list shows active accounts only.
    let (db, conn) = tokio_postgres::connect(&fx.database_url, tokio_postgres::NoTls)
        .await
        .expect("fixture database");
    tokio::spawn(conn);
    let active_followers: i64 = db
        .query_one(
            "SELECT count(*) FROM follows f JOIN actors a ON a.did = f.did \
             WHERE f.subject_did = $1 AND a.status = 'active'",
            &[did],
        )
        .await
        .expect("count")
        .get(0);
    assert!(active_followers <= actor.followers as i64);
    assert_eq!(
        summary["followers"].as_array().map(Vec::len),
        Some(active_followers as usize)
    );
    assert_eq!(summary["followersSubject"], did.as_str());
    assert!(summary["feed"].as_array().is_some_and(|f| !f.is_empty()) || actor.posts == 0);
    let _ = summary["search"].as_array().expect("search results");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_page_and_its_stats() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let (status, page) = common::http_get(server.addr, "/", None).await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("<title>skyhose</title>") && page.contains("/stats.json"));
    let (status, body) = common::http_get(server.addr, "/stats.json", None).await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_slice(&body).expect("stats JSON");
    assert!(stats["counts"]["posts"].is_i64());
    assert!(stats["watermark"].as_i64().unwrap_or(0) > 0);
    assert_eq!(stats["recent"].as_array().map(Vec::len), Some(10));
    let (status, health) = server.get("_health", "").await;
    assert_eq!(status, 200, "{health}");
    let _ = fx;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_handle_and_get_record() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let mut cases: Vec<(String, String, Value)> = Vec::new();
    let (did, actor) = fx
        .truth
        .actors
        .iter()
        .find(|(_, a)| a.status == "active" && a.handle.is_some())
        .expect("an active actor with a handle");
    let handle = actor.handle.clone().unwrap_or_default();
    let (status, body) = server
        .get(
            "com.atproto.identity.resolveHandle",
            &format!("handle={handle}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["did"], did.as_str());
    cases.push(("com.atproto.identity.resolveHandle".into(), handle, body));
    let (status, body) = server
        .get(
            "com.atproto.identity.resolveHandle",
            "handle=nobody.invalid-sim.test",
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("InvalidRequest"))
    );

    // Every sampled live record reads back with the CID the truth has.
    for (uri, cid) in fx.truth.records.iter().step_by(997).take(20) {
        let parts: Vec<&str> = uri.trim_start_matches("at://").split('/').collect();
        let owner_active = fx
            .truth
            .actors
            .get(parts[0])
            .is_some_and(|a| a.status == "active");
        let query = format!(
            "repo={}&collection={}&rkey={}",
            enc(parts[0]),
            parts[1],
            parts[2]
        );
        let (status, body) = server.get("com.atproto.repo.getRecord", &query).await;
        if !owner_active {
            assert_eq!(status, 400);
            continue;
        }
        assert_eq!(status, 200, "{uri}: {body}");
        assert_eq!(body["cid"], cid.as_str());
        assert_eq!(body["uri"], uri.as_str());
        cases.push(("com.atproto.repo.getRecord".into(), uri.clone(), body));
    }
    let (status, body) = server
        .get(
            "com.atproto.repo.getRecord",
            &format!(
                "repo={}&collection=app.bsky.feed.post&rkey=3zzzzzzzzzzzz",
                enc(did)
            ),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("RecordNotFound"))
    );
    validate_with_official_lexicons(&cases);
}

/// Thread shape: for posts with replies, the direct replies shown are exactly
/// the live replies by served accounts that the root's threadgate does not
/// hide, and every node's reply count is the truth's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_have_the_truths_shape() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let (db, conn) = tokio_postgres::connect(&fx.database_url, tokio_postgres::NoTls)
        .await
        .expect("fixture database");
    tokio::spawn(conn);
    let mut cases: Vec<(String, String, Value)> = Vec::new();
    let mut with_replies: Vec<(&String, u64)> = fx
        .truth
        .posts
        .iter()
        .filter(|(_, c)| c.replies > 0)
        .map(|(u, c)| (u, c.replies))
        .collect();
    with_replies.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let owner_active = |uri: &str| {
        let did = uri
            .trim_start_matches("at://")
            .split('/')
            .next()
            .unwrap_or("");
        fx.truth
            .actors
            .get(did)
            .is_some_and(|a| a.status == "active")
    };
    let mut checked = 0;
    for (uri, replies) in with_replies
        .into_iter()
        .filter(|(u, _)| owner_active(u))
        .take(12)
    {
        let (status, body) = server
            .get(
                "app.bsky.feed.getPostThread",
                &format!("uri={}&depth=1&parentHeight=5", enc(uri)),
            )
            .await;
        assert_eq!(status, 200, "{uri}: {body}");
        let thread = &body["thread"];
        assert_eq!(thread["post"]["replyCount"], replies, "{uri}");
        let shown = thread["replies"].as_array().map(Vec::len).unwrap_or(0) as i64;
        let expected: i64 = db
            .query_one(
                "SELECT count(*) FROM posts p JOIN actors a ON a.did = p.did \
                 WHERE p.reply_parent_uri = $1 AND a.status = 'active' \
                 AND NOT EXISTS (SELECT 1 FROM posts anchor JOIN threadgates tg \
                     ON tg.post_uri = COALESCE(anchor.reply_root_uri, anchor.uri) \
                     WHERE anchor.uri = $1 AND tg.hidden_replies ? p.uri)",
                &[uri],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(shown, expected, "{uri}: direct replies shown");
        for reply in thread["replies"].as_array().into_iter().flatten() {
            let reply_uri = reply["post"]["uri"].as_str().unwrap_or_default();
            let truth = fx
                .truth
                .posts
                .get(reply_uri)
                .expect("reply is live in the truth");
            assert_eq!(reply["post"]["likeCount"], truth.likes);
            assert_eq!(reply["post"]["replyCount"], truth.replies);
        }
        cases.push(("app.bsky.feed.getPostThread".into(), uri.clone(), body));
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} threads checked");
    validate_with_official_lexicons(&cases);
}

/// `associated` counts the lists, feed generators and starter packs an actor
/// runs, and says whether it is a labeler, as the ground truth has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_count_what_an_actor_runs() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let owned = |did: &str, collection: &str| {
        let prefix = format!("at://{did}/{collection}/");
        fx.truth
            .records
            .keys()
            .filter(|uri| uri.starts_with(&prefix))
            .count() as u64
    };
    const KINDS: [(&str, &str); 3] = [
        ("lists", "app.bsky.graph.list"),
        ("feedgens", "app.bsky.feed.generator"),
        ("starterPacks", "app.bsky.graph.starterpack"),
    ];
    let mut dids: Vec<&String> = fx
        .truth
        .actors
        .iter()
        .filter(|(_, a)| a.status == "active")
        .map(|(did, _)| did)
        .collect();
    dids.sort_by_key(|did| {
        std::cmp::Reverse(
            KINDS.iter().map(|(_, c)| owned(did, c)).sum::<u64>()
                + owned(did, "app.bsky.labeler.service"),
        )
    });
    dids.truncate(25);
    let query: Vec<String> = dids
        .iter()
        .map(|did| format!("actors={}", enc(did)))
        .collect();
    let (status, body) = server
        .get("app.bsky.actor.getProfiles", &query.join("&"))
        .await;
    assert_eq!(status, 200, "{body}");
    let profiles = body["profiles"].as_array().expect("profiles");
    assert_eq!(profiles.len(), dids.len());
    let mut seen = 0;
    for profile in profiles {
        let did = profile["did"].as_str().expect("did");
        for (field, collection) in KINDS {
            let expected = owned(did, collection);
            seen += expected;
            let shown = profile["associated"][field].as_u64().unwrap_or(0);
            assert_eq!(shown, expected, "{did}: associated.{field}");
        }
        let labeler = owned(did, "app.bsky.labeler.service") > 0;
        assert_eq!(
            profile["associated"]["labeler"].as_bool().unwrap_or(false),
            labeler,
            "{did}: associated.labeler"
        );
    }
    assert!(seen > 0, "the sample runs no lists, feeds or starter packs");
}
