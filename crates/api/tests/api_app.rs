//! What the official app calls beyond the classic read methods, over the
//! simulated index: the flat thread (`getPostThreadV2`, and the replies it
//! folds away through `getPostThreadOtherV2`), a custom feed from a feed
//! generator running on loopback (`getFeed`, with the failures a generator
//! can have), the generator's own view, and `getConfig`. Every answer
//! validates against the official lexicons.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::viewer::{db, enc, server_with_plc, token, Cases, AUD};
use common::{fixture, validate_with_official_lexicons, Server};
use serde_json::{json, Value};
use skyhose_sim::feedgen::{Behaviour, FeedGen};
use skyhose_sim::plc;

const V2: &str = "app.bsky.unspecced.getPostThreadV2";
const OTHER: &str = "app.bsky.unspecced.getPostThreadOtherV2";
const GET_FEED: &str = "app.bsky.feed.getFeed";

fn depths(thread: &Value) -> Vec<i64> {
    thread["thread"]
        .as_array()
        .expect("thread items")
        .iter()
        .map(|i| i["depth"].as_i64().expect("depth"))
        .collect()
}

fn uris(thread: &Value) -> Vec<String> {
    thread["thread"]
        .as_array()
        .expect("thread items")
        .iter()
        .map(|i| i["uri"].as_str().expect("uri").to_owned())
        .collect()
}

/// A root with the most replies at two levels and more, and its deepest
/// served reply.
async fn busy_thread(client: &tokio_postgres::Client) -> (String, String) {
    let row = client
        .query_one(
            "WITH served AS (SELECT did FROM actors WHERE status = 'active' AND indexed) \
             SELECT p.reply_root_uri AS root, \
                    (array_agg(p.uri ORDER BY p.rkey))[1] AS reply \
             FROM posts p JOIN posts parent ON parent.uri = p.reply_parent_uri \
             JOIN posts root ON root.uri = p.reply_root_uri \
             WHERE parent.reply_parent_uri = root.uri \
               AND p.did IN (SELECT did FROM served) AND parent.did IN (SELECT did FROM served) \
               AND root.did IN (SELECT did FROM served) \
             GROUP BY p.reply_root_uri ORDER BY count(*) DESC, 1 LIMIT 1",
            &[],
        )
        .await
        .expect("a thread with nested replies");
    (row.get("root"), row.get("reply"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_v2_flattens_the_thread_with_depths() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();
    let (root, deep) = busy_thread(&client).await;

    // From the root: no parents, the anchor at depth 0, each item at most
    // one level below the one before it, every reply after its parent.
    let (status, body) = server
        .get(V2, &format!("anchor={}&branchingFactor=100", enc(&root)))
        .await;
    assert_eq!(status, 200, "{body}");
    let d = depths(&body);
    assert_eq!(d.first(), Some(&0), "{body}");
    assert!(d.windows(2).all(|w| w[1] <= w[0] + 1 && w[1] >= 1), "{d:?}");
    let listed = uris(&body);
    let position: HashMap<&str, usize> = listed
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect();
    for item in body["thread"].as_array().unwrap().iter().skip(1) {
        let parent = item["value"]["post"]["record"]["reply"]["parent"]["uri"]
            .as_str()
            .expect("a reply");
        assert!(
            position[parent] < position[item["uri"].as_str().unwrap()],
            "reply listed before its parent"
        );
        assert_eq!(
            item["value"]["$type"],
            "app.bsky.unspecced.defs#threadItemPost"
        );
    }
    assert_eq!(body["hasOtherReplies"], false);
    cases.push((V2.into(), "root".into(), body.clone()));

    // The same replies as the nested thread down to the same depth.
    let (status, nested) = server
        .get(
            "app.bsky.feed.getPostThread",
            &format!("uri={}&depth=6", enc(&root)),
        )
        .await;
    assert_eq!(status, 200, "{nested}");
    fn count(node: &Value) -> usize {
        1 + node["replies"]
            .as_array()
            .map(|r| r.iter().map(count).sum())
            .unwrap_or(0)
    }
    assert_eq!(listed.len(), count(&nested["thread"]), "V1 and V2 agree");

    // A branching factor of 1 keeps one reply per post below the first
    // level, and counts the others in moreReplies.
    let (_, narrow) = server
        .get(V2, &format!("anchor={}&branchingFactor=1", enc(&root)))
        .await;
    let items = narrow["thread"].as_array().unwrap();
    let mut children: HashMap<String, usize> = HashMap::new();
    for item in items.iter().filter(|i| i["depth"].as_i64() > Some(1)) {
        let parent = item["value"]["post"]["record"]["reply"]["parent"]["uri"]
            .as_str()
            .unwrap();
        *children.entry(parent.to_owned()).or_default() += 1;
    }
    assert!(children.values().all(|n| *n <= 1), "{children:?}");
    cases.push((V2.into(), "branchingFactor=1".into(), narrow.clone()));

    // Sorted: among replies to the root by others than its author, oldest
    // first by default and newest first when asked.
    let op = root.split('/').nth(2).unwrap().to_owned();
    let first_level = |body: &Value| -> Vec<String> {
        body["thread"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["depth"] == 1 && i["value"]["post"]["author"]["did"] != op.as_str())
            .map(|i| i["value"]["post"]["indexedAt"].as_str().unwrap().to_owned())
            .collect()
    };
    let oldest = first_level(&body);
    assert!(oldest.windows(2).all(|w| w[0] <= w[1]), "{oldest:?}");
    let (_, newest) = server
        .get(V2, &format!("anchor={}&sort=newest", enc(&root)))
        .await;
    let newest_first = first_level(&newest);
    assert!(
        newest_first.windows(2).all(|w| w[0] >= w[1]),
        "{newest_first:?}"
    );
    let (status, top) = server
        .get(V2, &format!("anchor={}&sort=top", enc(&root)))
        .await;
    assert_eq!(status, 200, "{top}");
    cases.push((V2.into(), "sort=top".into(), top));

    // From a deep reply: its parents first, nearest last, then the anchor.
    let (status, body) = server.get(V2, &format!("anchor={}", enc(&deep))).await;
    assert_eq!(status, 200, "{body}");
    let d = depths(&body);
    let anchor_at = d.iter().position(|x| *x == 0).expect("the anchor");
    assert!(anchor_at >= 2, "{d:?}");
    let expected: Vec<i64> = (-(anchor_at as i64)..=0).collect();
    assert_eq!(&d[..=anchor_at], expected.as_slice());
    assert_eq!(uris(&body)[0], root, "the walk reaches the root");
    assert_eq!(body["thread"][0]["value"]["moreParents"], false);
    cases.push((V2.into(), "deep anchor".into(), body));

    // above=false: the anchor first; below=0: nothing under it.
    let (_, body) = server
        .get(V2, &format!("anchor={}&above=false&below=0", enc(&deep)))
        .await;
    assert_eq!(depths(&body), vec![0]);
    cases.push((V2.into(), "above=false below=0".into(), body));

    // An unknown anchor is a notFound item, not an error.
    let missing = format!("{}x", root.trim_end_matches(|c: char| c != '/'));
    let (status, body) = server.get(V2, &format!("anchor={}", enc(&missing))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["thread"][0]["value"]["$type"],
        "app.bsky.unspecced.defs#threadItemNotFound"
    );
    cases.push((V2.into(), "missing".into(), body));

    for (query, param) in [
        ("below=21", "below"),
        ("branchingFactor=-1", "branchingFactor"),
        ("above=maybe", "above"),
        ("", "anchor"),
    ] {
        let q = format!("anchor={}&{query}", enc(&root));
        let q = if param == "anchor" { String::new() } else { q };
        let (status, body) = server.get(V2, &q).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body["message"].as_str().unwrap().contains(param), "{body}");
    }
    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_hidden_by_the_threadgate_move_to_other_v2() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();
    // A root with two replies by others than its author; its author hides
    // the first with a threadgate.
    let row = client
        .query_one(
            "SELECT root.uri, root.did, root.rkey, \
                    (array_agg(r.uri ORDER BY r.rkey))[1] AS hidden \
             FROM posts root JOIN posts r ON r.reply_parent_uri = root.uri AND r.did <> root.did \
             WHERE root.reply_parent_uri IS NULL \
               AND NOT EXISTS (SELECT 1 FROM threadgates t \
                   WHERE t.uri = 'at://' || root.did || '/app.bsky.feed.threadgate/' || root.rkey) \
             GROUP BY root.uri, root.did, root.rkey HAVING count(*) >= 2 \
             ORDER BY root.uri LIMIT 1",
            &[],
        )
        .await
        .expect("a root with replies");
    let (root, did, rkey, hidden): (String, String, String, String) = (
        row.get("uri"),
        row.get("did"),
        row.get("rkey"),
        row.get("hidden"),
    );
    let gate = format!("at://{did}/app.bsky.feed.threadgate/{rkey}");
    let record = json!({
        "$type": "app.bsky.feed.threadgate",
        "post": root,
        "hiddenReplies": [hidden],
        "createdAt": "2026-01-01T00:00:00.000Z",
    });
    let cid = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";
    client
        .execute(
            "INSERT INTO records (uri, did, collection, rkey, cid, live, record) \
             VALUES ($1, $2, 'app.bsky.feed.threadgate', $3, $4, true, $5)",
            &[&gate, &did, &rkey, &cid, &record],
        )
        .await
        .expect("threadgate record");
    client
        .execute(
            "INSERT INTO threadgates (uri, did, rkey, cid, post_uri, hidden_replies) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&gate, &did, &rkey, &cid, &root, &json!([hidden])],
        )
        .await
        .expect("threadgate row");

    let (status, body) = server.get(V2, &format!("anchor={}", enc(&root))).await;
    assert_eq!(status, 200, "{body}");
    assert!(!uris(&body).contains(&hidden), "hidden reply left out");
    assert_eq!(body["hasOtherReplies"], true);
    assert_eq!(body["threadgate"]["uri"], gate.as_str());
    cases.push((V2.into(), "threadgate".into(), body));

    let (status, body) = server.get(OTHER, &format!("anchor={}", enc(&root))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(uris(&body), vec![hidden.clone()]);
    assert_eq!(body["thread"][0]["depth"], 1);
    assert_eq!(body["thread"][0]["value"]["hiddenByThreadgate"], true);
    cases.push((OTHER.into(), "threadgate".into(), body));

    let (status, body) = server
        .get(OTHER, &format!("anchor={}", enc(&format!("{root}x"))))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["thread"], json!([]));
    cases.push((OTHER.into(), "missing".into(), body));
    validate_with_official_lexicons(&cases);
}

/// Points the `nth` simulated generator record (tests running at once take
/// different ones) at `generator` and returns its URI.
async fn generator_served_by(
    client: &tokio_postgres::Client,
    generator: &FeedGen,
    nth: i64,
) -> String {
    let row = client
        .query_one(
            "UPDATE feed_generators SET service_did = $1 WHERE uri = ( \
                 SELECT g.uri FROM feed_generators g JOIN actors a ON a.did = g.did \
                 WHERE a.status = 'active' AND a.indexed \
                 ORDER BY g.uri OFFSET $2 LIMIT 1) RETURNING uri",
            &[&generator.did(), &nth],
        )
        .await
        .expect("a generator to repoint");
    row.get("uri")
}

/// Newest posts by served accounts, for the skeleton.
async fn served_posts(client: &tokio_postgres::Client, n: i64) -> Vec<String> {
    client
        .query(
            "SELECT p.uri FROM posts p JOIN actors a ON a.did = p.did \
             WHERE a.status = 'active' AND a.indexed ORDER BY p.uri DESC LIMIT $1",
            &[&n],
        )
        .await
        .expect("posts")
        .iter()
        .map(|r| r.get("uri"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_feed_hydrates_the_generators_skeleton() {
    let (server, plc) = server_with_plc().await;
    let client = db().await;
    let mut cases = Cases::new();
    let generator = FeedGen::start(Behaviour::Garbage)
        .await
        .expect("feed generator");
    let feed = generator_served_by(&client, &generator, 0).await;
    let posts = served_posts(&client, 6).await;
    let repost: Option<(String, String)> = client
        .query_opt(
            "SELECT r.uri, r.subject_uri FROM reposts r JOIN posts p ON p.uri = r.subject_uri \
             JOIN actors a ON a.did = r.did AND a.status = 'active' AND a.indexed \
             JOIN actors pa ON pa.did = p.did AND pa.status = 'active' AND pa.indexed \
             ORDER BY r.uri LIMIT 1",
            &[],
        )
        .await
        .expect("repost query")
        .map(|r| (r.get("uri"), r.get("subject_uri")));
    let (repost_uri, reposted) = repost.expect("a repost of a served post");
    let deleted = format!("{}zz", posts[0]);
    let mut skeleton: Vec<Value> = vec![
        json!({"post": posts[0], "feedContext": "ctx-0"}),
        json!({"post": deleted}),
        json!({"post": "not a uri"}),
        json!({"post": reposted, "reason": {
            "$type": "app.bsky.feed.defs#skeletonReasonRepost", "repost": repost_uri}}),
    ];
    skeleton.extend(posts[1..].iter().map(|p| json!({ "post": p })));
    generator.set_behaviour(Behaviour::Serve(skeleton));

    // Page one: the generator's order, the deleted and malformed items
    // left out, the repost shown with its reason, the cursor kept.
    let (status, body) = server
        .get(GET_FEED, &format!("feed={}&limit=4", enc(&feed)))
        .await;
    assert_eq!(status, 200, "{body}");
    let shown: Vec<&str> = body["feed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["post"]["uri"].as_str().unwrap())
        .collect();
    assert_eq!(shown, vec![posts[0].as_str(), reposted.as_str()]);
    assert_eq!(body["feed"][0]["feedContext"], "ctx-0");
    assert_eq!(body["feed"][0]["reqId"], "req-1");
    assert_eq!(
        body["feed"][1]["reason"]["$type"],
        "app.bsky.feed.defs#reasonRepost"
    );
    assert_eq!(body["cursor"], "4");
    cases.push((GET_FEED.into(), "page 1".into(), body));
    let (status, body) = server
        .get(GET_FEED, &format!("feed={}&limit=4&cursor=4", enc(&feed)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["feed"].as_array().unwrap().len(), 4);
    assert_eq!(body["cursor"], "8");
    cases.push((GET_FEED.into(), "page 2".into(), body));
    let (_, body) = server
        .get(GET_FEED, &format!("feed={}&limit=4&cursor=8", enc(&feed)))
        .await;
    assert_eq!(body["feed"].as_array().unwrap().len(), 1);
    assert!(body.get("cursor").is_none(), "{body}");

    // A viewer's token minted for the generator, as a PDS sends it, is
    // accepted and passed on as it came.
    let viewer = fixture().truth.actors.keys().next().unwrap().clone();
    let _ = token(&plc, &viewer, GET_FEED);
    let for_generator = plc::mint_service_auth(
        &fixture().sim,
        &viewer,
        generator.did(),
        "app.bsky.feed.getFeedSkeleton",
        300,
    );
    let (status, body) = server
        .get_with(
            GET_FEED,
            &format!("feed={}&limit=2", enc(&feed)),
            Some(&for_generator),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["feed"][0]["post"]["viewer"].is_object(), "{body}");
    assert_eq!(
        generator.authorizations().last().cloned().flatten(),
        Some(format!("Bearer {for_generator}"))
    );
    cases.push((GET_FEED.into(), "viewer".into(), body));
    // Ours for getFeed works too; one for another service or method not.
    let ours = token(&plc, &viewer, GET_FEED);
    let (status, _) = server
        .get_with(GET_FEED, &format!("feed={}", enc(&feed)), Some(&ours))
        .await;
    assert_eq!(status, 200);
    for (aud, lxm, error) in [
        (
            "did:web:elsewhere.test",
            "app.bsky.feed.getFeedSkeleton",
            "BadJwtAudience",
        ),
        (
            generator.did(),
            "app.bsky.feed.getTimeline",
            "BadJwtLexiconMethod",
        ),
        (AUD, "app.bsky.feed.getTimeline", "BadJwtLexiconMethod"),
    ] {
        let bad = plc::mint_service_auth(&fixture().sim, &viewer, aud, lxm, 300);
        let (status, body) = server
            .get_with(GET_FEED, &format!("feed={}", enc(&feed)), Some(&bad))
            .await;
        assert_eq!(status, 401, "{aud} {lxm}: {body}");
        assert_eq!(body["error"], error);
    }

    // The generator's view: its DID resolves to a #bsky_fg endpoint.
    let (status, body) = server
        .get(
            "app.bsky.feed.getFeedGenerator",
            &format!("feed={}", enc(&feed)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["view"]["did"], generator.did());
    assert_eq!(body["isOnline"], true);
    cases.push((
        "app.bsky.feed.getFeedGenerator".into(),
        "served".into(),
        body,
    ));

    let (status, body) = server.get("app.bsky.unspecced.getConfig", "").await;
    assert_eq!(status, 200, "{body}");
    cases.push(("app.bsky.unspecced.getConfig".into(), String::new(), body));
    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_feed_fails_cleanly_when_the_generator_does() {
    let fx = fixture();
    let plc = plc::start(plc::PlcConfig {
        sim: fx.sim.clone(),
        ..plc::PlcConfig::default()
    })
    .await
    .expect("plc");
    let url = plc.url();
    let server = Server::start(move |c| {
        c.plc_url = url;
        c.allow_loopback_identity = true;
        c.service_did = AUD.into();
        c.feed_timeout = Duration::from_millis(300);
    })
    .await;
    let client = db().await;
    let generator = FeedGen::start(Behaviour::Garbage)
        .await
        .expect("feed generator");
    let feed = generator_served_by(&client, &generator, 1).await;
    let query = format!("feed={}", enc(&feed));

    let (status, body) = server.get(GET_FEED, &query).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("InvalidFeedResponse"))
    );

    let silent = FeedGen::start_unresponsive().await.expect("feed generator");
    let silent_feed = generator_served_by(&client, &silent, 2).await;
    let started = std::time::Instant::now();
    let (status, body) = server
        .get(GET_FEED, &format!("feed={}", enc(&silent_feed)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("UpstreamFailure"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "timed out late"
    );

    generator.set_behaviour(Behaviour::Status(500));
    let (status, body) = server.get(GET_FEED, &query).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("UpstreamFailure"))
    );

    // A generator record whose service has no document.
    client
        .execute(
            "UPDATE feed_generators SET service_did = 'did:web:127.0.0.1%3A1' WHERE uri = $1",
            &[&feed],
        )
        .await
        .expect("repoint");
    let (status, body) = server.get(GET_FEED, &query).await;
    assert_eq!(status, 502, "{body}");

    let unknown = format!("{}x", feed);
    let (status, body) = server
        .get(GET_FEED, &format!("feed={}", enc(&unknown)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("InvalidRequest"))
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("could not find feed"));

    for (q, param) in [("", "feed"), ("feed=nope", "feed"), ("limit=101", "limit")] {
        let q = if param == "limit" {
            format!("{query}&{q}")
        } else {
            q.to_owned()
        };
        let (status, body) = server.get(GET_FEED, &q).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body["message"].as_str().unwrap().contains(param), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggestions_and_trends_come_from_the_index() {
    let (server, plc) = server_with_plc().await;
    let client = db().await;
    let mut cases = Cases::new();

    // Accounts by followers, most first, paged; a viewer's follows left out.
    let (status, page1) = server.get("app.bsky.actor.getSuggestions", "limit=5").await;
    assert_eq!(status, 200, "{page1}");
    let actors = page1["actors"].as_array().unwrap();
    assert_eq!(actors.len(), 5);
    let top: i64 = client
        .query_one(
            "SELECT max(followers) AS n FROM actors WHERE status = 'active' AND indexed",
            &[],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        actors[0]["followersCount"].as_i64(),
        None,
        "profileView has no counts"
    );
    let first = actors[0]["did"].as_str().unwrap().to_owned();
    let followers: i64 = client
        .query_one("SELECT followers FROM actors WHERE did = $1", &[&first])
        .await
        .unwrap()
        .get("followers");
    assert_eq!(followers, top);
    let cursor = page1["cursor"].as_str().expect("a cursor").to_owned();
    let (_, page2) = server
        .get(
            "app.bsky.actor.getSuggestions",
            &format!("limit=5&cursor={}", enc(&cursor)),
        )
        .await;
    let second: Vec<&str> = page2["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["did"].as_str().unwrap())
        .collect();
    assert!(!second.contains(&first.as_str()), "pages do not overlap");
    cases.push((
        "app.bsky.actor.getSuggestions".into(),
        "page 1".into(),
        page1,
    ));

    let viewer: String = client
        .query_one(
            "SELECT f.did FROM follows f JOIN actors a ON a.did = f.did \
             WHERE a.status = 'active' AND a.indexed AND f.subject_did = $1 LIMIT 1",
            &[&first],
        )
        .await
        .expect("a follower of the top account")
        .get("did");
    let bearer = token(&plc, &viewer, "app.bsky.actor.getSuggestions");
    let (status, body) = server
        .get_with("app.bsky.actor.getSuggestions", "limit=50", Some(&bearer))
        .await;
    assert_eq!(status, 200, "{body}");
    let dids: Vec<&str> = body["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["did"].as_str().unwrap())
        .collect();
    assert!(
        !dids.contains(&first.as_str()),
        "followed account suggested"
    );
    assert!(
        !dids.contains(&viewer.as_str()),
        "viewer suggested to itself"
    );
    cases.push((
        "app.bsky.actor.getSuggestions".into(),
        "viewer".into(),
        body,
    ));

    let (status, body) = server
        .get(
            "app.bsky.graph.getSuggestedFollowsByActor",
            &format!("actor={}", enc(&first)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body["suggestions"].as_array().unwrap().is_empty(),
        "{body}"
    );
    assert!(body["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["did"] != first.as_str()));
    cases.push((
        "app.bsky.graph.getSuggestedFollowsByActor".into(),
        String::new(),
        body,
    ));

    let (status, body) = server
        .get("app.bsky.unspecced.getSuggestedUsers", "limit=3")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["actors"][0]["did"], first.as_str());
    assert_eq!(body["actors"].as_array().unwrap().len(), 3);
    cases.push((
        "app.bsky.unspecced.getSuggestedUsers".into(),
        String::new(),
        body,
    ));

    for nsid in [
        "app.bsky.feed.getSuggestedFeeds",
        "app.bsky.unspecced.getPopularFeedGenerators",
        "app.bsky.unspecced.getSuggestedFeeds",
    ] {
        let (status, body) = server.get(nsid, "limit=3").await;
        assert_eq!(status, 200, "{body}");
        let likes: Vec<i64> = body["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["likeCount"].as_i64().unwrap())
            .collect();
        assert!(!likes.is_empty());
        assert!(likes.windows(2).all(|w| w[0] >= w[1]), "{likes:?}");
        cases.push((nsid.into(), String::new(), body));
    }
    let (status, body) = server
        .get(
            "app.bsky.unspecced.getPopularFeedGenerators",
            "query=no-such-feed-name",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["feeds"], json!([]));

    // Hashtags of the newest posts by the most accounts.
    let (status, body) = server.get("app.bsky.unspecced.getTrendingTopics", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["topics"].as_array().unwrap().is_empty(), "{body}");
    cases.push((
        "app.bsky.unspecced.getTrendingTopics".into(),
        String::new(),
        body,
    ));
    let (status, body) = server.get("app.bsky.unspecced.getTrends", "limit=3").await;
    assert_eq!(status, 200, "{body}");
    let trends = body["trends"].as_array().unwrap();
    assert!(!trends.is_empty() && trends.len() <= 3, "{body}");
    assert!(trends[0]["postCount"].as_i64().unwrap() >= 2);
    cases.push(("app.bsky.unspecced.getTrends".into(), String::new(), body));

    for (nsid, q, param) in [
        ("app.bsky.actor.getSuggestions", "limit=0", "limit"),
        ("app.bsky.actor.getSuggestions", "cursor=zz", "cursor"),
        ("app.bsky.graph.getSuggestedFollowsByActor", "", "actor"),
        ("app.bsky.unspecced.getTrends", "limit=26", "limit"),
    ] {
        let (status, body) = server.get(nsid, q).await;
        assert_eq!(status, 400, "{nsid}?{q}: {body}");
        assert!(body["message"].as_str().unwrap().contains(param), "{body}");
    }
    validate_with_official_lexicons(&cases);
}
