//! Lists, starter packs, blocks, relationships, known followers and labeler
//! services over a simulated index: every response validates against the
//! official lexicons, listings agree with the index's rows when paged
//! through, and viewer-only methods need a service-auth token.

mod common;

use std::collections::BTreeSet;

use common::viewer::{db, enc, page_all, server_with_plc, token, Cases};
use common::{validate_with_official_lexicons, Server};
use serde_json::Value;

/// Accounts the API serves.
const SERVED: &str = "a.indexed AND a.status = 'active'";

fn uris(items: &[Value], key: &str) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|i| i[key].as_str().map(str::to_owned))
        .collect()
}

async fn strings(client: &tokio_postgres::Client, sql: &str, param: &str) -> BTreeSet<String> {
    client
        .query(sql, &[&param])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Gives `did` and `rkey` their ids, which a post row keeps (the index
/// resolves them before it writes one).
async fn post_ids(client: &tokio_postgres::Client, did: &str, rkey: &str) {
    client
        .batch_execute(&format!(
            "INSERT INTO dids (did) VALUES ('{did}') ON CONFLICT DO NOTHING; \
             INSERT INTO rkey_names (rkey) SELECT '{rkey}' WHERE tid_int('{rkey}') IS NULL \
             ON CONFLICT DO NOTHING"
        ))
        .await
        .expect("post ids");
}

async fn first(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_starter_packs_match_the_index() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();

    // The list with the most members, by a served creator.
    let list = first(
        &client,
        &format!(
            "SELECT l.uri FROM lists l JOIN actors a ON a.did = l.did WHERE {SERVED} \
             ORDER BY (SELECT count(*) FROM list_items li WHERE li.list_uri = l.uri) DESC, l.uri LIMIT 1"
        ),
    )
    .await;
    let items = page_all(
        &server,
        "app.bsky.graph.getList",
        &format!("list={}", enc(&list)),
        "items",
        3,
        None,
        &mut cases,
    )
    .await;
    let expected = strings(
        &client,
        &format!(
            "SELECT li.uri FROM list_items li JOIN actors a ON a.did = li.subject_did \
             WHERE li.list_uri = $1 AND {SERVED}"
        ),
        &list,
    )
    .await;
    assert!(!expected.is_empty());
    assert_eq!(uris(&items, "uri"), expected);
    let (_, body) = server
        .get("app.bsky.graph.getList", &format!("list={}", enc(&list)))
        .await;
    let count = client
        .query_one(
            "SELECT count(*) FROM list_items WHERE list_uri = $1",
            &[&list],
        )
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(body["list"]["listItemCount"], count);

    // Every list of its creator, and only curation lists when asked.
    let creator = list
        .strip_prefix("at://")
        .and_then(|r| r.split('/').next())
        .expect("did")
        .to_owned();
    let lists = page_all(
        &server,
        "app.bsky.graph.getLists",
        &format!("actor={}", enc(&creator)),
        "lists",
        2,
        None,
        &mut cases,
    )
    .await;
    let expected = strings(&client, "SELECT uri FROM lists WHERE did = $1", &creator).await;
    assert_eq!(uris(&lists, "uri"), expected);
    let (status, curated) = server
        .get(
            "app.bsky.graph.getLists",
            &format!("actor={}&purposes=curatelist", enc(&creator)),
        )
        .await;
    assert_eq!(status, 200, "{curated}");
    for l in curated["lists"].as_array().expect("lists") {
        assert_eq!(l["purpose"], "app.bsky.graph.defs#curatelist");
    }
    cases.push((
        "app.bsky.graph.getLists".into(),
        "curatelist".into(),
        curated,
    ));
    let (status, body) = server
        .get(
            "app.bsky.graph.getLists",
            &format!("actor={}&purposes=everything", enc(&creator)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("purposes"));

    // Starter packs: one in full, several, and an actor's.
    let pack = first(
        &client,
        &format!(
            "SELECT s.uri FROM starter_packs s JOIN actors a ON a.did = s.did WHERE {SERVED} \
             ORDER BY (s.feeds IS NOT NULL AND jsonb_array_length(s.feeds) > 0) DESC, s.uri LIMIT 1"
        ),
    )
    .await;
    let (status, body) = server
        .get(
            "app.bsky.graph.getStarterPack",
            &format!("starterPack={}", enc(&pack)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["starterPack"]["uri"], pack.as_str());
    // The accounts that joined through it, as the index keeps them; no
    // item count, as the official AppView shows none.
    let joined: i64 = client
        .query_one(
            "SELECT count(*) FROM profiles WHERE joined_via_starter_pack_uri = $1",
            &[&pack],
        )
        .await
        .expect("joined")
        .get(0);
    assert_eq!(body["starterPack"]["joinedAllTimeCount"], joined, "{body}");
    assert!(body["starterPack"]["joinedWeekCount"].as_i64() <= Some(joined));
    assert!(body["starterPack"].get("listItemCount").is_none(), "{body}");
    cases.push(("app.bsky.graph.getStarterPack".into(), pack.clone(), body));
    let packs: Vec<String> = client
        .query(
            &format!(
                "SELECT s.uri FROM starter_packs s JOIN actors a ON a.did = s.did \
                 WHERE {SERVED} ORDER BY s.uri LIMIT 5"
            ),
            &[],
        )
        .await
        .expect("packs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let query: Vec<String> = packs.iter().map(|u| format!("uris={}", enc(u))).collect();
    let (status, body) = server
        .get("app.bsky.graph.getStarterPacks", &query.join("&"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        uris(body["starterPacks"].as_array().expect("packs"), "uri"),
        packs.iter().cloned().collect()
    );
    cases.push(("app.bsky.graph.getStarterPacks".into(), "five".into(), body));
    let owner = pack
        .strip_prefix("at://")
        .and_then(|r| r.split('/').next())
        .expect("did")
        .to_owned();
    let actor_packs = page_all(
        &server,
        "app.bsky.graph.getActorStarterPacks",
        &format!("actor={}", enc(&owner)),
        "starterPacks",
        1,
        None,
        &mut cases,
    )
    .await;
    let expected = strings(
        &client,
        "SELECT uri FROM starter_packs WHERE did = $1",
        &owner,
    )
    .await;
    assert_eq!(uris(&actor_packs, "uri"), expected);

    // Labelers, basic and detailed, skipping unknown DIDs.
    let labelers: Vec<String> = client
        .query(
            &format!(
                "SELECT s.did FROM labeler_services s JOIN actors a ON a.did = s.did \
                 WHERE {SERVED} AND s.rkey = 'self' ORDER BY s.did LIMIT 3"
            ),
            &[],
        )
        .await
        .expect("labelers")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!labelers.is_empty(), "the simulator makes labelers");
    let mut query: Vec<String> = labelers
        .iter()
        .map(|d| format!("dids={}", enc(d)))
        .collect();
    query.push("dids=did%3Aplc%3Anobodyhere".into());
    for detailed in [false, true] {
        let (status, body) = server
            .get(
                "app.bsky.labeler.getServices",
                &format!("{}&detailed={detailed}", query.join("&")),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let views = body["views"].as_array().expect("views");
        assert_eq!(views.len(), labelers.len(), "{body}");
        cases.push((
            "app.bsky.labeler.getServices".into(),
            format!("detailed={detailed}"),
            body,
        ));
    }
    let (status, body) = server
        .get("app.bsky.labeler.getServices", "dids=not-a-did")
        .await;
    assert_eq!(status, 400, "{body}");

    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_relationships_and_known_followers_match_the_index() {
    let (server, plc) = server_with_plc().await;
    let client = db().await;
    let mut cases = Cases::new();

    // Viewer-only methods need a token.
    for nsid in [
        "app.bsky.graph.getBlocks",
        "app.bsky.graph.getListBlocks",
        "app.bsky.graph.getKnownFollowers",
    ] {
        let (status, body) = server.get(nsid, "actor=did%3Aplc%3Ax").await;
        assert_eq!(status, 401, "{nsid}: {body}");
        assert_eq!(body["error"], "AuthMissing");
    }

    // The served account with the most blocks.
    let blocker = first(
        &client,
        &format!(
            "SELECT b.did FROM blocks b JOIN actors a ON a.did = b.did WHERE {SERVED} \
             GROUP BY b.did ORDER BY count(*) DESC, b.did LIMIT 1"
        ),
    )
    .await;
    let bearer = token(&plc, &blocker, "app.bsky.graph.getBlocks");
    let blocks = page_all(
        &server,
        "app.bsky.graph.getBlocks",
        "x=1",
        "blocks",
        2,
        Some(&bearer),
        &mut cases,
    )
    .await;
    let expected = strings(
        &client,
        &format!(
            "SELECT b.subject_did FROM blocks b JOIN actors a ON a.did = b.subject_did \
             WHERE b.did = $1 AND {SERVED}"
        ),
        &blocker,
    )
    .await;
    assert_eq!(uris(&blocks, "did"), expected);

    let list_blocker = first(
        &client,
        &format!(
            "SELECT b.did FROM list_blocks b JOIN actors a ON a.did = b.did WHERE {SERVED} \
             GROUP BY b.did ORDER BY count(*) DESC, b.did LIMIT 1"
        ),
    )
    .await;
    let bearer = token(&plc, &list_blocker, "app.bsky.graph.getListBlocks");
    let lists = page_all(
        &server,
        "app.bsky.graph.getListBlocks",
        "x=1",
        "lists",
        2,
        Some(&bearer),
        &mut cases,
    )
    .await;
    let expected = strings(
        &client,
        &format!(
            "SELECT l.uri FROM list_blocks b JOIN lists l ON l.uri = b.list_uri \
             JOIN actors a ON a.did = l.did WHERE b.did = $1 AND {SERVED}"
        ),
        &list_blocker,
    )
    .await;
    assert_eq!(uris(&lists, "uri"), expected);
    for l in &lists {
        assert!(l["viewer"]["blocked"].is_string(), "{l}");
    }

    // Relationships of the most-following account with some it follows,
    // one handle, and an unknown DID.
    let follower = first(
        &client,
        &format!(
            "SELECT f.did FROM follows f JOIN actors a ON a.did = f.did WHERE {SERVED} \
             GROUP BY f.did ORDER BY count(*) DESC, f.did LIMIT 1"
        ),
    )
    .await;
    let followed: Vec<(String, String)> = client
        .query(
            &format!(
                "SELECT DISTINCT ON (f.subject_did) f.subject_did, a.handle FROM follows f \
                 JOIN actors a ON a.did = f.subject_did \
                 WHERE f.did = $1 AND {SERVED} AND a.handle IS NOT NULL \
                 ORDER BY f.subject_did LIMIT 4"
            ),
            &[&follower],
        )
        .await
        .expect("followed")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(followed.len() >= 2);
    let mut query = vec![format!("actor={}", enc(&follower))];
    query.extend(
        followed
            .iter()
            .skip(1)
            .map(|(d, _)| format!("others={}", enc(d))),
    );
    query.push(format!("others={}", enc(&followed[0].1)));
    query.push("others=did%3Aplc%3Anobodyhere".into());
    let (status, body) = server
        .get("app.bsky.graph.getRelationships", &query.join("&"))
        .await;
    assert_eq!(status, 200, "{body}");
    let rels = body["relationships"].as_array().expect("relationships");
    assert_eq!(rels.len(), followed.len() + 1);
    for rel in &rels[..followed.len()] {
        let did = rel["did"].as_str().expect("did");
        let following = strings(
            &client,
            &format!("SELECT uri FROM follows WHERE did = '{follower}' AND subject_did = $1"),
            did,
        )
        .await;
        assert!(
            following.contains(rel["following"].as_str().expect("following")),
            "{rel}"
        );
    }
    assert_eq!(rels[followed.len()]["notFound"], true);
    cases.push((
        "app.bsky.graph.getRelationships".into(),
        "mixed".into(),
        body,
    ));

    // Known followers: the followers of an account that the viewer follows.
    let subject = &followed[1].0;
    let bearer = token(&plc, &follower, "app.bsky.graph.getKnownFollowers");
    let known = page_all(
        &server,
        "app.bsky.graph.getKnownFollowers",
        &format!("actor={}", enc(subject)),
        "followers",
        2,
        Some(&bearer),
        &mut cases,
    )
    .await;
    let expected = strings(
        &client,
        &format!(
            "SELECT DISTINCT f.did FROM follows f JOIN actors a ON a.did = f.did \
             WHERE f.subject_did = $1 AND {SERVED} AND EXISTS \
             (SELECT 1 FROM follows v WHERE v.did = '{follower}' AND v.subject_did = f.did)"
        ),
        subject,
    )
    .await;
    let blocked = strings(
        &client,
        &format!(
            "SELECT subject_did FROM blocks WHERE did = '{follower}' AND $1 <> '' \
             UNION SELECT did FROM blocks WHERE subject_did = '{follower}'"
        ),
        "x",
    )
    .await;
    let expected: BTreeSet<String> = expected.difference(&blocked).cloned().collect();
    let got: BTreeSet<String> = uris(&known, "did");
    assert!(got.is_subset(&expected), "{got:?} vs {expected:?}");

    validate_with_official_lexicons(&cases);
}

/// Posts quoting a feed generator, a list, a starter pack and a labeler get
/// the matching view inside their record embed. The simulator only quotes
/// posts, so these four posts are written into this binary's own fixture
/// database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_of_generators_lists_packs_and_labelers_render_their_views() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let served = |table: &str| {
        format!(
            "SELECT t.uri, t.cid FROM {table} t JOIN actors a ON a.did = t.did \
             WHERE {SERVED} ORDER BY t.uri LIMIT 1"
        )
    };
    let author = first(
        &client,
        &format!("SELECT a.did FROM actors a WHERE {SERVED} ORDER BY a.did LIMIT 1"),
    )
    .await;
    let mut quoted = Vec::new();
    for (table, view) in [
        ("feed_generators", "app.bsky.feed.defs#generatorView"),
        ("lists", "app.bsky.graph.defs#listView"),
        ("starter_packs", "app.bsky.graph.defs#starterPackViewBasic"),
        ("labeler_services", "app.bsky.labeler.defs#labelerView"),
    ] {
        let row = client.query_one(&served(table), &[]).await.expect(table);
        quoted.push((row.get::<_, String>(0), row.get::<_, String>(1), view));
    }
    let mut post_uris = Vec::new();
    for (i, (uri, cid, _)) in quoted.iter().enumerate() {
        let rkey = format!("3zzzzquote{i}");
        let post = format!("at://{author}/app.bsky.feed.post/{rkey}");
        let record = serde_json::json!({
            "$type": "app.bsky.feed.post",
            "text": "look at this",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "embed": {"$type": "app.bsky.embed.record", "record": {"uri": uri, "cid": cid}},
        });
        post_ids(&client, &author, &rkey).await;
        client
            .execute(
                "INSERT INTO posts (uri, did, rkey, cid, embed_type, embed_record_uri, \
                 created_at, record, actor, rkey_id) \
                 VALUES ($1, $2, $3, $4, 'app.bsky.embed.record', $5, \
                 '2026-01-01T00:00:00.000Z', $6, did_id($2), rkey_id($3))",
                &[&post, &author, &rkey, cid, uri, &record],
            )
            .await
            .expect("post");
        post_uris.push(post);
    }
    let query: Vec<String> = post_uris
        .iter()
        .map(|u| format!("uris={}", enc(u)))
        .collect();
    let (status, body) = server.get("app.bsky.feed.getPosts", &query.join("&")).await;
    assert_eq!(status, 200, "{body}");
    let posts = body["posts"].as_array().expect("posts");
    assert_eq!(posts.len(), quoted.len(), "{body}");
    for (post, (uri, _, view)) in posts.iter().zip(&quoted) {
        let embedded = &post["embed"]["record"];
        assert_eq!(embedded["$type"], *view, "{post}");
        assert_eq!(embedded["uri"], uri.as_str(), "{post}");
    }
    validate_with_official_lexicons(&[("app.bsky.feed.getPosts".into(), "quotes".into(), body)]);
}

/// An account's follows are read backwards along the range of their uris
/// (no `(did, rkey)` index): paged through in small pages, they are the
/// index's served follows of the account, newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_page_newest_first() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();
    let nsid = "app.bsky.graph.getFollows";
    let actor = first(
        &client,
        &format!(
            "SELECT f.did FROM follows f JOIN actors a ON a.did = f.did WHERE {SERVED} \
             GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ),
    )
    .await;
    let listed = page_all(
        &server,
        nsid,
        &format!("actor={}", enc(&actor)),
        "follows",
        7,
        None,
        &mut cases,
    )
    .await;
    let got: Vec<&str> = listed.iter().filter_map(|p| p["did"].as_str()).collect();
    let expected: Vec<String> = client
        .query(
            &format!(
                "SELECT f.subject_did FROM follows f JOIN actors a ON a.did = f.subject_did \
                 WHERE f.did = $1 AND {SERVED} ORDER BY f.rkey DESC, f.uri DESC"
            ),
            &[&actor],
        )
        .await
        .expect("follows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(expected.len() > 7, "more than one page");
    assert_eq!(got, expected);
    validate_with_official_lexicons(&cases);
}

/// A thread shows no post of another thread, as the official AppView's
/// thread boundary: a parent whose record names another root ends the
/// parent chain (no `parent`, no placeholder), and a reply that names
/// another root is left out of the replies, in both thread methods. The
/// simulator writes consistent threads, so these posts are written into
/// this binary's own fixture database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_end_at_posts_of_another_thread() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let author = first(
        &client,
        &format!("SELECT a.did FROM actors a WHERE {SERVED} ORDER BY a.did DESC LIMIT 1"),
    )
    .await;
    let uri = |rkey: &str| format!("at://{author}/app.bsky.feed.post/{rkey}");
    let (root, reply, stray, other_root) = (
        uri("3zzzzboundary1"),
        uri("3zzzzboundary2"),
        uri("3zzzzboundary3"),
        uri("3zzzzboundary9"),
    );
    let cid = "bafyreih4wp2q5fugnjuj3iwmmtnjx3s5ymcizgo4yb4rasspmxyrjy7fma";
    // (uri, root, parent): the root, a reply to it, and a reply to that
    // reply whose record names another root.
    for (post, reply_root, parent) in [
        (&root, None, None),
        (&reply, Some(&root), Some(&root)),
        (&stray, Some(&other_root), Some(&reply)),
    ] {
        let mut record = serde_json::json!({
            "$type": "app.bsky.feed.post",
            "text": "thread boundary",
            "createdAt": "2026-01-01T00:00:00.000Z",
        });
        if let (Some(r), Some(p)) = (reply_root, parent) {
            record["reply"] = serde_json::json!({
                "root": {"uri": r, "cid": cid}, "parent": {"uri": p, "cid": cid}});
        }
        let rkey = post.rsplit('/').next().unwrap_or_default();
        post_ids(&client, &author, rkey).await;
        client
            .execute(
                "INSERT INTO posts (uri, did, rkey, cid, reply_root_uri, reply_parent_uri, \
                 created_at, record, actor, rkey_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, '2026-01-01T00:00:00.000Z', $7, \
                 did_id($2), rkey_id($3))",
                &[post, &author, &rkey, &cid, &reply_root, &parent, &record],
            )
            .await
            .expect("post");
    }

    let thread = |uri: &str| {
        let server = &server;
        let query = format!("uri={}&depth=5", enc(uri));
        async move {
            let (status, body) = server.get("app.bsky.feed.getPostThread", &query).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    // The stray reply's parent is in another thread: the chain ends.
    let body = thread(&stray).await;
    assert_eq!(body["thread"]["post"]["uri"], stray.as_str(), "{body}");
    assert!(body["thread"].get("parent").is_none(), "{body}");
    // The reply's replies leave the stray one out; its parent is shown.
    let body = thread(&reply).await;
    assert_eq!(
        body["thread"]["parent"]["post"]["uri"],
        root.as_str(),
        "{body}"
    );
    assert_eq!(body["thread"]["replies"], serde_json::json!([]), "{body}");
    let mut cases = vec![(
        "app.bsky.feed.getPostThread".to_owned(),
        "boundary".to_owned(),
        body,
    )];

    let (status, body) = server
        .get(
            "app.bsky.unspecced.getPostThreadV2",
            &format!("anchor={}", enc(&stray)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let shown: Vec<&str> = body["thread"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["uri"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(shown, vec![stray.as_str()], "{body}");
    cases.push((
        "app.bsky.unspecced.getPostThreadV2".to_owned(),
        "boundary".to_owned(),
        body,
    ));
    validate_with_official_lexicons(&cases);
}
