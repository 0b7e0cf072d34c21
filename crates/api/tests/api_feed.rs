//! Likes, reposts, quotes, feed generators, list feeds, the timeline and
//! notifications over a simulated index: every response validates against
//! the official lexicons, listings agree with the simulator's ground truth
//! when paged through, viewer-only methods work with service-auth tokens from
//! the simulated PLC directory, and bad parameters get a 400 naming them.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::viewer::{db, enc, page_all, server_with_plc, server_with_plc_on, token, Cases, AUD};
use common::{fixture, index_entries, unique_id, validate_with_official_lexicons, Server};
use serde_json::json;
use skyhose_ingest::{EntryKind, StreamEntry};
use skyhose_proto::tid::Tid;
use skyhose_sim::plc;

/// Interactions by accounts that are not served (taken down, deactivated,
/// deleted) are counted by the truth but not listed.
async fn unserved(client: &tokio_postgres::Client, sql: &str, uri: &str) -> u64 {
    let row = client.query_one(sql, &[&uri]).await.expect("count");
    row.get::<_, i64>(0) as u64
}

const UNSERVED_LIKERS: &str = "SELECT count(*) FROM likes l JOIN actors a ON a.did = l.did \
     WHERE l.subject_uri = $1 AND (a.status <> 'active' OR NOT a.indexed)";
const UNSERVED_REPOSTERS: &str = "SELECT count(*) FROM reposts r JOIN actors a ON a.did = r.did \
     WHERE r.subject_uri = $1 AND (a.status <> 'active' OR NOT a.indexed)";
const UNSERVED_QUOTES: &str = "SELECT count(*) FROM posts p JOIN actors a ON a.did = p.did \
     WHERE p.embed_record_uri = $1 AND (a.status <> 'active' OR NOT a.indexed)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_reposts_and_quotes_page_through_to_the_truth() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();

    let top = |f: fn(&skyhose_sim::PostCounts) -> u64| -> Vec<String> {
        let mut posts: Vec<(&String, u64)> =
            fx.truth.posts.iter().map(|(u, c)| (u, f(c))).collect();
        posts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        posts.into_iter().take(3).map(|(u, _)| u.clone()).collect()
    };
    let mut checked = 0;
    for uri in top(|c| c.likes) {
        let truth = fx.truth.posts[&uri].likes;
        assert!(truth > 0);
        let likes = page_all(
            &server,
            "app.bsky.feed.getLikes",
            &format!("uri={}", enc(&uri)),
            "likes",
            7,
            None,
            &mut cases,
        )
        .await;
        let expected = truth - unserved(&client, UNSERVED_LIKERS, &uri).await;
        // Like records, not likers: one account may have liked twice.
        assert_eq!(likes.len() as u64, expected, "likes of {uri}");
        checked += 1;
    }
    for uri in top(|c| c.reposts) {
        let truth = fx.truth.posts[&uri].reposts;
        let reposters = page_all(
            &server,
            "app.bsky.feed.getRepostedBy",
            &format!("uri={}", enc(&uri)),
            "repostedBy",
            5,
            None,
            &mut cases,
        )
        .await;
        let expected = truth - unserved(&client, UNSERVED_REPOSTERS, &uri).await;
        assert_eq!(reposters.len() as u64, expected, "reposts of {uri}");
        checked += 1;
    }
    for uri in top(|c| c.quotes) {
        let truth = fx.truth.posts[&uri].quotes;
        assert!(truth > 0);
        let quotes = page_all(
            &server,
            "app.bsky.feed.getQuotes",
            &format!("uri={}", enc(&uri)),
            "posts",
            2,
            None,
            &mut cases,
        )
        .await;
        let expected = truth - unserved(&client, UNSERVED_QUOTES, &uri).await;
        assert_eq!(quotes.len() as u64, expected, "quotes of {uri}");
        let mut seen = HashSet::new();
        for q in &quotes {
            assert!(seen.insert(q["uri"].as_str().unwrap_or_default().to_owned()));
            let quoted = q["record"]["embed"]["record"]["uri"]
                .as_str()
                .or_else(|| q["record"]["embed"]["record"]["record"]["uri"].as_str());
            assert_eq!(quoted, Some(uri.as_str()));
        }
        checked += 1;
    }
    assert_eq!(checked, 9);

    // The subject's CID narrows to that version; a CID nobody liked gives none.
    let uri = &top(|c| c.likes)[0];
    let cid = &fx.truth.records[uri];
    let (status, body) = server
        .get(
            "app.bsky.feed.getLikes",
            &format!("uri={}&cid={cid}&limit=3", enc(uri)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cid"], cid.as_str());
    assert_eq!(body["uri"], uri.as_str());
    cases.push(("app.bsky.feed.getLikes".into(), "by cid".into(), body));
    let other_cid = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";
    let (status, body) = server
        .get(
            "app.bsky.feed.getLikes",
            &format!("uri={}&cid={other_cid}", enc(uri)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["likes"].as_array().map(Vec::len), Some(0));

    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_generators_match_the_records() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let mut cases = Cases::new();

    // The active actor with the most generator records.
    let generators = |did: &str| -> BTreeSet<String> {
        let prefix = format!("at://{did}/app.bsky.feed.generator/");
        fx.truth
            .records
            .range(prefix.clone()..)
            .take_while(|(u, _)| u.starts_with(&prefix))
            .map(|(u, _)| u.clone())
            .collect()
    };
    let (did, mine) = fx
        .truth
        .actors
        .iter()
        .filter(|(_, a)| a.status == "active")
        .map(|(did, _)| (did.clone(), generators(did)))
        .max_by_key(|(_, g)| g.len())
        .expect("an actor");
    assert!(
        mine.len() >= 2,
        "the fixture has an actor with several generators"
    );

    let feeds = page_all(
        &server,
        "app.bsky.feed.getActorFeeds",
        &format!("actor={}", enc(&did)),
        "feeds",
        1,
        None,
        &mut cases,
    )
    .await;
    let listed: BTreeSet<String> = feeds
        .iter()
        .filter_map(|f| f["uri"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(listed, mine);
    assert_eq!(listed.len(), feeds.len());
    for feed in &feeds {
        let uri = feed["uri"].as_str().unwrap_or_default();
        assert_eq!(feed["cid"], fx.truth.records[uri].as_str());
        assert_eq!(feed["creator"]["did"], did.as_str());
        assert!(feed["likeCount"].as_i64().is_some_and(|n| n >= 0));
    }

    // getFeedGenerator resolves the generator's service DID, which the
    // simulator's records name on no network: api_app.rs runs one.
    let missing = format!("at://{did}/app.bsky.feed.generator/nosuchfeed");
    let query: String = mine
        .iter()
        .chain([&missing])
        .map(|u| format!("feeds={}&", enc(u)))
        .collect();
    let (status, body) = server.get("app.bsky.feed.getFeedGenerators", &query).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<&str> = body["feeds"]
        .as_array()
        .expect("feeds")
        .iter()
        .filter_map(|f| f["uri"].as_str())
        .collect();
    assert_eq!(
        got,
        mine.iter().map(String::as_str).collect::<Vec<_>>(),
        "in request order, unknown left out"
    );
    cases.push(("app.bsky.feed.getFeedGenerators".into(), did.clone(), body));

    let (status, body) = server
        .get(
            "app.bsky.feed.getFeedGenerator",
            &format!("feed={}", enc(&missing)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("feed"),
        "{body}"
    );

    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_feeds_show_the_members_posts_newest_first() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();
    let row = client
        .query_one(
            "SELECT li.list_uri, count(DISTINCT p.uri) FROM list_items li \
             JOIN lists l ON l.uri = li.list_uri JOIN posts p ON p.did = li.subject_did \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
            &[],
        )
        .await
        .expect("a list with posting members");
    let list: String = row.get(0);
    let members: HashSet<String> = client
        .query(
            "SELECT subject_did FROM list_items WHERE list_uri = $1",
            &[&list],
        )
        .await
        .expect("members")
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let feed = page_all(
        &server,
        "app.bsky.feed.getListFeed",
        &format!("list={}", enc(&list)),
        "feed",
        10,
        None,
        &mut cases,
    )
    .await;
    assert!(!feed.is_empty());
    let served: i64 = client
        .query_one(
            "SELECT count(*) FROM posts p JOIN actors a ON a.did = p.did AND a.status = 'active' AND a.indexed \
             WHERE p.did IN (SELECT subject_did FROM list_items WHERE list_uri = $1) \
             AND NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.did = split_part($1, '/', 3) AND b.subject_did = p.did) \
                 OR (b.did = p.did AND b.subject_did = split_part($1, '/', 3)))",
            &[&list],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        feed.len() as i64,
        served,
        "every served member post of {list}"
    );
    let mut previous: Option<String> = None;
    for item in &feed {
        let uri = item["post"]["uri"].as_str().expect("uri");
        assert!(members.contains(item["post"]["author"]["did"].as_str().unwrap_or_default()));
        let rkey = uri.rsplit('/').next().unwrap_or_default().to_owned();
        if let Some(prev) = &previous {
            assert!(rkey < *prev, "newest first");
        }
        previous = Some(rkey);
    }

    let (status, body) = server
        .get(
            "app.bsky.feed.getListFeed",
            "list=at%3A%2F%2Fdid%3Aplc%3Aaaaa%2Fapp.bsky.graph.list%2F3kaaaaaaaaaaa",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "UnknownList");

    validate_with_official_lexicons(&cases);
}

/// No block either way between the viewer `$1` and the account `{did}`, by
/// record or by a block list one of them subscribed to that names the other.
fn unblocked(did: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.did = $1 AND b.subject_did = {did}) \
           OR (b.did = {did} AND b.subject_did = $1)) \
         AND NOT EXISTS (SELECT 1 FROM list_blocks lb JOIN list_items li ON li.list_uri = lb.list_uri \
           WHERE (lb.did = $1 AND li.subject_did = {did}) OR (lb.did = {did} AND li.subject_did = $1))"
    )
}

/// The active account with the most rows from `sql` (`did, count`).
async fn busiest(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client.query(sql, &[]).await.expect("busiest");
    let fx = fixture();
    rows.into_iter()
        .map(|r| r.get::<_, String>(0))
        .find(|did| {
            fx.truth
                .actors
                .get(did)
                .is_some_and(|a| a.status == "active")
        })
        .expect("an active account")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_is_what_the_viewer_follows() {
    let (server, plc) = server_with_plc().await;
    let client = db().await;
    let mut cases = Cases::new();
    let nsid = "app.bsky.feed.getTimeline";
    let viewer = busiest(
        &client,
        "SELECT did, count(*) FROM follows GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .await;
    let follows: HashSet<String> = client
        .query("SELECT subject_did FROM follows WHERE did = $1", &[&viewer])
        .await
        .expect("follows")
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let token = token(&plc, &viewer, nsid);
    let feed = page_all(
        &server,
        nsid,
        "algorithm=reverse-chronological",
        "feed",
        25,
        Some(&token),
        &mut cases,
    )
    .await;
    assert!(feed.len() > 25, "more than one page");
    let expected: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM posts WHERE did = $1 OR did IN (SELECT subject_did FROM follows WHERE did = $1)) \
                  + (SELECT count(*) FROM reposts WHERE did = $1 OR did IN (SELECT subject_did FROM follows WHERE did = $1))",
            &[&viewer],
        )
        .await
        .expect("count")
        .get(0);
    assert!(feed.len() as i64 <= expected);
    let mut reposts = 0;
    for item in &feed {
        let by = match item["reason"]["$type"].as_str() {
            Some("app.bsky.feed.defs#reasonRepost") => {
                reposts += 1;
                item["reason"]["by"]["did"].as_str()
            }
            _ => item["post"]["author"]["did"].as_str(),
        }
        .unwrap_or_default();
        assert!(
            by == viewer || follows.contains(by),
            "{by} is not followed by the viewer"
        );
        assert!(
            item["post"]["viewer"].is_object(),
            "viewer state on every post"
        );
    }
    assert!(reposts > 0, "reposts appear in the timeline");
    // Exact: every post (other than replies, which blocks of the accounts
    // they reply to may hide) of the viewer and of those they follow, in
    // order.
    // Accounts are read a few rows at a time and again where a page needs
    // more, so a page must still hold every row that belongs on it.
    let key = |item: &serde_json::Value| -> (String, String) {
        let uri = match item["reason"]["uri"].as_str() {
            Some(repost) => repost,
            None => item["post"]["uri"].as_str().unwrap_or_default(),
        };
        let rkey = uri.rsplit('/').next().unwrap_or_default();
        (rkey.to_owned(), uri.to_owned())
    };
    let keys: Vec<(String, String)> = feed.iter().map(key).collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest first, no row twice"
    );
    let posts: Vec<String> = client
        .query(
            "SELECT uri FROM posts WHERE reply_parent_uri IS NULL AND (did = $1 \
               OR did IN (SELECT subject_did FROM follows WHERE did = $1)) \
             ORDER BY rkey DESC, uri DESC",
            &[&viewer],
        )
        .await
        .expect("posts")
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let shown: Vec<String> = feed
        .iter()
        .filter(|item| item["reason"].is_null() && item["reply"].is_null())
        .filter_map(|item| item["post"]["uri"].as_str().map(str::to_owned))
        .collect();
    // Accounts that the viewer's blocks or their status hide are left out
    // whole; of the others, every post is on the pages.
    let authors: HashSet<&str> = shown.iter().filter_map(|u| u.split('/').nth(2)).collect();
    let posts: Vec<String> = posts
        .into_iter()
        .filter(|u| u.split('/').nth(2).is_some_and(|did| authors.contains(did)))
        .collect();
    assert!(authors.len() > 10, "posts of many accounts");
    assert_eq!(shown, posts, "the viewer's and followed accounts' posts");

    let (status, body) = server.get(nsid, "").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "AuthMissing");
    // A token for another method does not open this one.
    let wrong = plc::mint_service_auth(
        &fixture().sim,
        &viewer,
        AUD,
        "app.bsky.actor.getProfile",
        300,
    );
    let (status, _) = server.get_with(nsid, "", Some(&wrong)).await;
    assert_eq!(status, 401);
    let (status, body) = server.get_with(nsid, "limit=0", Some(&token)).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap_or("").contains("limit"));

    validate_with_official_lexicons(&cases);
    plc.shutdown().await;
}

/// A followed account that is not served (here deactivated) gives the
/// timeline nothing: its rows are not read, so newer rows of it cannot
/// take the pages that the served accounts' rows belong on. Read and then
/// dropped, 25 newer posts of it would fill the ten pages of two that one
/// answer may read, and the answer would show nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_that_are_not_served_take_no_room_in_the_timeline() {
    let database_url = format!(
        "postgres://postgres@127.0.0.1:5432/skyhose_apitest_{}_unserved",
        unique_id()
    );
    // Accounts of the simulator, which its PLC directory vouches for; this
    // database holds only the records below.
    let dids: Vec<&str> = fixture().truth.actors.keys().map(String::as_str).collect();
    let [viewer, served, gone, ..] = dids[..] else {
        panic!("three simulated accounts");
    };
    let mut seq = 0;
    let mut entries = Vec::new();
    let mut commit = |did: &str, collection: &str, record: serde_json::Value| {
        seq += 1;
        let rkey = Tid::from_value(1_700_000_000_000_000 + seq)
            .expect("a TID")
            .to_string();
        let data = json!({"repo": did, "rev": rkey, "time": "2024-01-01T00:00:00.000Z",
            "ops": [{"action": "create", "path": format!("{collection}/{rkey}"),
                     "cid": "bafyreib2rxk3rybk3aobmv5cjuql3bm2twh4jo5uxgf5u6pbkyfcrarvmm",
                     "record": record}]});
        entries.push(StreamEntry {
            kind: EntryKind::Commit,
            data: data.to_string(),
            seq,
            op_errors: 0,
        });
        format!("at://{did}/{collection}/{rkey}")
    };
    let post = |text: &str| json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-01-01T00:00:00.000Z"});
    let follow = |subject: &str| {
        json!({"$type": "app.bsky.graph.follow", "subject": subject,
               "createdAt": "2024-01-01T00:00:00.000Z"})
    };
    commit(viewer, "app.bsky.graph.follow", follow(served));
    commit(viewer, "app.bsky.graph.follow", follow(gone));
    let shown = commit(served, "app.bsky.feed.post", post("older, served"));
    for n in 0..25 {
        commit(gone, "app.bsky.feed.post", post(&format!("newer {n}")));
    }
    seq += 1;
    entries.push(StreamEntry {
        kind: EntryKind::Account,
        data: json!({"did": gone, "active": false, "status": "deactivated",
                     "time": "2024-01-01T00:00:00.000Z"})
        .to_string(),
        seq,
        op_errors: 0,
    });
    index_entries(
        &database_url,
        &format!("apitest:{}:unserved", unique_id()),
        entries.into_iter(),
    )
    .await;

    let (server, plc) = server_with_plc_on(&database_url).await;
    let nsid = "app.bsky.feed.getTimeline";
    let token = token(&plc, viewer, nsid);
    let (status, body) = server.get_with(nsid, "limit=2", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let uris: Vec<&str> = body["feed"]
        .as_array()
        .expect("feed")
        .iter()
        .filter_map(|item| item["post"]["uri"].as_str())
        .collect();
    assert_eq!(uris, [shown.as_str()], "{body}");
    assert!(body["cursor"].is_null(), "nothing follows: {body}");
    validate_with_official_lexicons(&[(nsid.into(), "unserved follows".into(), body)]);
    plc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_likes_are_the_viewers_own() {
    let (server, plc) = server_with_plc().await;
    let client = db().await;
    let mut cases = Cases::new();
    let nsid = "app.bsky.feed.getActorLikes";
    let viewer = busiest(
        &client,
        "SELECT did, count(*) FROM likes GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .await;
    let token = token(&plc, &viewer, nsid);
    let feed = page_all(
        &server,
        nsid,
        &format!("actor={}", enc(&viewer)),
        "feed",
        20,
        Some(&token),
        &mut cases,
    )
    .await;
    // Every like of a served post whose author and the viewer do not block
    // each other (a post liked twice is listed twice, like the reference).
    let likes: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM likes l JOIN posts p ON p.uri = l.subject_uri \
                 JOIN actors a ON a.did = p.did AND a.status = 'active' AND a.indexed \
                 WHERE l.did = $1 AND (p.did = $1 OR {})",
                unblocked("p.did")
            ),
            &[&viewer],
        )
        .await
        .expect("count")
        .get(0);
    assert!(feed.len() > 20, "more than one page");
    assert_eq!(feed.len() as i64, likes);
    for item in &feed {
        assert!(
            item["post"]["viewer"]["like"].is_string(),
            "the viewer liked it: {item}"
        );
    }

    // Someone else's likes: the reference AppView's 400.
    let other = fixture()
        .truth
        .actors
        .iter()
        .find(|(did, a)| a.status == "active" && **did != viewer)
        .map(|(did, _)| did.clone())
        .expect("another actor");
    let (status, body) = server
        .get_with(nsid, &format!("actor={}", enc(&other)), Some(&token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("actor"));
    // Without a token too: anyone but the actor is told the same.
    let (status, body) = server.get(nsid, &format!("actor={}", enc(&viewer))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("InvalidRequest"))
    );
    let (status, body) = server
        .get_with(nsid, "actor=not_a_handle!", Some(&token))
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap_or("").contains("actor"));

    validate_with_official_lexicons(&cases);
    plc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_and_unread_counts() {
    let (server, plc) = server_with_plc().await;
    let client = db().await;
    let mut cases = Cases::new();
    let list = "app.bsky.notification.listNotifications";
    let unread = "app.bsky.notification.getUnreadCount";
    let viewer = busiest(
        &client,
        "SELECT recipient_did, count(*) FROM all_notifications GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .await;
    let list_token = token(&plc, &viewer, list);
    let unread_token = token(&plc, &viewer, unread);
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM all_notifications WHERE recipient_did = $1",
            &[&viewer],
        )
        .await
        .expect("count")
        .get(0);

    let all = page_all(
        &server,
        list,
        "priority=false",
        "notifications",
        50,
        Some(&list_token),
        &mut cases,
    )
    .await;
    assert!(
        all.len() > 50 && all.len() as i64 <= total,
        "{} of {total}",
        all.len()
    );
    let mut reasons = BTreeSet::new();
    let mut seen = HashSet::new();
    for n in &all {
        assert_eq!(n["isRead"], false);
        assert!(n["record"]["$type"].is_string(), "the causing record: {n}");
        reasons.insert(n["reason"].as_str().unwrap_or_default().to_owned());
        let key = (
            n["uri"].as_str().unwrap_or_default().to_owned(),
            n["reason"].as_str().unwrap_or_default().to_owned(),
            n["reasonSubject"].clone().to_string(),
        );
        assert!(seen.insert(key), "listed twice: {n}");
    }
    assert!(reasons.len() >= 3, "{reasons:?}");
    // Pages follow the index's order across its tables (stored rows and
    // like, repost and follow rows), and every page boundary, ties in seq
    // included, neither skips nor repeats: what is listed is the index's
    // ordered list less the notifications of unserved or blocked authors.
    let ordered: Vec<(String, String)> = client
        .query(
            "SELECT record_uri, reason FROM all_notifications WHERE recipient_did = $1 \
             ORDER BY seq DESC, record_uri DESC, reason DESC",
            &[&viewer],
        )
        .await
        .expect("ordered notifications")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut rest = ordered.iter();
    for n in &all {
        let key = (
            n["uri"].as_str().unwrap_or_default().to_owned(),
            n["reason"].as_str().unwrap_or_default().to_owned(),
        );
        assert!(
            rest.any(|stored| *stored == key),
            "listed out of order or not in the index: {n}"
        );
    }

    // Follows: one notification per follow by a served, unblocked account.
    let follows = page_all(
        &server,
        list,
        "reasons=follow",
        "notifications",
        100,
        Some(&list_token),
        &mut cases,
    )
    .await;
    assert!(follows.iter().all(|n| n["reason"] == "follow"));
    let followers: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM follows f JOIN actors a ON a.did = f.did AND a.status = 'active' AND a.indexed \
                 WHERE f.subject_did = $1 AND f.did <> $1 AND {}",
                unblocked("f.did")
            ),
            &[&viewer],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(follows.len() as i64, followers);
    let two = page_all(
        &server,
        list,
        "reasons=like&reasons[]=reply",
        "notifications",
        100,
        Some(&list_token),
        &mut cases,
    )
    .await;
    assert!(two
        .iter()
        .all(|n| n["reason"] == "like" || n["reason"] == "reply"));

    let (status, body) = server
        .get_with(
            list,
            "seenAt=2999-01-01T00:00:00Z&limit=5",
            Some(&list_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["notifications"]
        .as_array()
        .expect("array")
        .iter()
        .all(|n| n["isRead"] == true));
    cases.push((list.into(), "seen".into(), body));

    let (status, body) = server.get_with(unread, "", Some(&unread_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], total);
    cases.push((unread.into(), "all".into(), body));
    let (_, body) = server
        .get_with(
            unread,
            "seenAt=2999-01-01T00:00:00.000Z",
            Some(&unread_token),
        )
        .await;
    assert_eq!(body["count"], 0);
    let (_, body) = server
        .get_with(unread, "seenAt=1970-01-01T00:00:00Z", Some(&unread_token))
        .await;
    assert_eq!(body["count"], total);

    for (nsid, query, param) in [
        (list, "seenAt=yesterday", "seenAt"),
        (list, "limit=101", "limit"),
        (list, "cursor=bm90IGEgY3Vyc29y", "cursor"),
        (unread, "seenAt=2024-13-45T00:00:00Z", "seenAt"),
    ] {
        let tok = if nsid == list {
            &list_token
        } else {
            &unread_token
        };
        let (status, body) = server.get_with(nsid, query, Some(tok)).await;
        assert_eq!(status, 400, "{nsid}?{query}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains(param),
            "{body}"
        );
    }
    for nsid in [list, unread] {
        let (status, body) = server.get(nsid, "").await;
        assert_eq!(status, 401, "{body}");
    }

    validate_with_official_lexicons(&cases);
    plc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_named() {
    let server = Server::start(|_| {}).await;
    let post = "at%3A%2F%2Fdid%3Aplc%3Aaaaa%2Fapp.bsky.feed.post%2F3kaaaaaaaaaaa";
    for (nsid, query, param) in [
        ("app.bsky.feed.getLikes", "", "uri"),
        ("app.bsky.feed.getLikes", "uri=https://example.com", "uri"),
        (
            "app.bsky.feed.getLikes",
            &format!("uri={post}&limit=0") as &str,
            "limit",
        ),
        (
            "app.bsky.feed.getLikes",
            &format!("uri={post}&cid=not-a-cid!"),
            "cid",
        ),
        (
            "app.bsky.feed.getRepostedBy",
            &format!("uri={post}&limit=101"),
            "limit",
        ),
        (
            "app.bsky.feed.getRepostedBy",
            &format!("uri={post}&cursor=%%%"),
            "cursor",
        ),
        (
            "app.bsky.feed.getQuotes",
            &format!("uri={post}&cursor=bm9uZXdsaW5l"),
            "cursor",
        ),
        ("app.bsky.feed.getQuotes", "uri=at%3A%2F%2F", "uri"),
        ("app.bsky.feed.getFeedGenerator", "", "feed"),
        ("app.bsky.feed.getFeedGenerator", "feed=nope", "feed"),
        ("app.bsky.feed.getFeedGenerators", "", "feeds"),
        ("app.bsky.feed.getFeedGenerators", "feeds=x", "feeds"),
        ("app.bsky.feed.getActorFeeds", "actor=did:plc:", "actor"),
        (
            "app.bsky.feed.getActorFeeds",
            "actor=alice.test&limit=x",
            "limit",
        ),
        (
            "app.bsky.feed.getActorFeeds",
            "actor=nobody.sim.test",
            "actor",
        ),
        ("app.bsky.feed.getListFeed", "", "list"),
        (
            "app.bsky.feed.getListFeed",
            &format!("list={post}&limit=1000"),
            "limit",
        ),
    ] {
        let (status, body) = server.get(nsid, query).await;
        assert_eq!(status, 400, "{nsid}?{query}: {body}");
        let message = body["message"].as_str().unwrap_or("");
        assert!(
            message.contains(param),
            "{nsid}?{query}: {message:?} should name {param}"
        );
    }
}
