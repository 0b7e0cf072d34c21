//! Labels and takedowns in views: labels of the accepted labelers (the
//! configured ones, or those of `atproto-accept-labelers`) show on every
//! view of their subject (posts, accounts, lists, feed generators, starter
//! packs, labelers) beside self-labels, negated and expired ones do
//! not; taken-down posts are not found and taken-down accounts answer
//! `AccountTakedown`, until restored; `queryLabels` pages through labels
//! of the labelers it is asked for.

mod common;

use common::{fixture, http_request, Server};
use serde_json::Value;

const L1: &str = "did:plc:labelerone22222222222222";
const L2: &str = "did:plc:labelertwo22222222222222";

async fn db() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&fixture().database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A served post and its author, with a second post of another author.
async fn subjects(server: &Server) -> (String, String, String) {
    let mut found = Vec::new();
    for uri in fixture().truth.posts.keys() {
        let (status, body) = server
            .get("app.bsky.feed.getPosts", &format!("uris={uri}"))
            .await;
        assert_eq!(status, 200, "{body}");
        if let Some(post) = body["posts"].as_array().and_then(|p| p.first()) {
            let did = post["author"]["did"].as_str().unwrap().to_owned();
            if found.iter().all(|(_, d): &(String, String)| *d != did) {
                found.push((uri.clone(), did));
            }
        }
        if found.len() == 2 {
            break;
        }
    }
    let second = found.pop().unwrap();
    let (post, did) = found.pop().unwrap();
    (post, did, second.0)
}

async fn label(
    client: &tokio_postgres::Client,
    src: &str,
    uri: &str,
    val: &str,
    neg: bool,
    exp: Option<&str>,
) {
    client
        .execute(
            "INSERT INTO labelers (did) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&src],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO labels (uri, src, val, neg, cts, exp, sig)
             SELECT $1, id, $3, $4, '2026-01-01T00:00:00.000Z', $5, '\\x00' FROM labelers WHERE did = $2",
            &[&uri, &src, &val, &neg, &exp],
        )
        .await
        .unwrap();
}

fn vals(labels: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = labels
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["src"].as_str().unwrap().to_owned(),
                l["val"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn moderation(labels: &Value) -> Vec<(String, String)> {
    vals(labels)
        .into_iter()
        .filter(|(src, _)| src == L1 || src == L2)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_show_in_views_and_takedowns_hide_until_restored() {
    let server = Server::start(|c| {
        c.labelers = vec![L1.to_owned()];
        c.takedown_labelers = vec![L2.to_owned()];
    })
    .await;
    let (post, did, other) = subjects(&server).await;
    let client = db().await;
    label(&client, L1, &post, "porn", false, None).await;
    label(
        &client,
        L1,
        &post,
        "spam",
        false,
        Some("2020-01-01T00:00:00.000Z"),
    )
    .await;
    label(&client, L1, &post, "misleading", true, None).await;
    label(
        &client,
        L1,
        &post,
        "rude",
        false,
        Some("2100-01-01T00:00:00.000Z"),
    )
    .await;
    label(&client, L2, &post, "graphic-media", false, None).await;
    label(&client, L1, &did, "impersonation", false, None).await;
    let l1 = |v: &str| (L1.to_owned(), v.to_owned());

    // Post views: getPosts, the thread, the author's feed.
    let (_, body) = server
        .get("app.bsky.feed.getPosts", &format!("uris={post}"))
        .await;
    assert_eq!(
        moderation(&body["posts"][0]["labels"]),
        vec![l1("porn"), l1("rude")]
    );
    assert_eq!(
        moderation(&body["posts"][0]["author"]["labels"]),
        vec![l1("impersonation")]
    );
    let (_, body) = server
        .get(
            "app.bsky.feed.getPostThread",
            &format!("uri={post}&depth=0"),
        )
        .await;
    assert_eq!(
        moderation(&body["thread"]["post"]["labels"]),
        vec![l1("porn"), l1("rude")]
    );
    let (_, body) = server
        .get(
            "app.bsky.feed.getAuthorFeed",
            &format!("actor={did}&limit=100"),
        )
        .await;
    let item = body["feed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["post"]["uri"] == post.as_str() && i.get("reason").is_none())
        .expect("the post in its author's feed");
    assert_eq!(
        moderation(&item["post"]["labels"]),
        vec![l1("porn"), l1("rude")]
    );
    // Profile views.
    let (_, body) = server
        .get("app.bsky.actor.getProfile", &format!("actor={did}"))
        .await;
    assert_eq!(moderation(&body["labels"]), vec![l1("impersonation")]);
    let (_, body) = server
        .get("app.bsky.actor.getProfiles", &format!("actors={did}"))
        .await;
    assert_eq!(
        moderation(&body["profiles"][0]["labels"]),
        vec![l1("impersonation")]
    );

    // The request chooses the labelers; the response says which applied:
    // a served account may label, an unknown DID is left out.
    label(&client, &did, &post, "satire", false, None).await;
    let path = format!("/xrpc/app.bsky.feed.getPosts?uris={post}");
    let accept = format!("{did};redact, did:plc:unknownunknownunknownun");
    let res = http_request(
        server.addr,
        "GET",
        &path,
        &[("atproto-accept-labelers", &accept)],
        None,
    )
    .await;
    assert_eq!(res.status, 200);
    let body: Value = serde_json::from_slice(&res.body).unwrap();
    let shown = vals(&body["posts"][0]["labels"]);
    assert!(
        shown.contains(&(did.clone(), "satire".to_owned())),
        "{shown:?}"
    );
    assert!(
        moderation(&body["posts"][0]["labels"]).is_empty(),
        "{shown:?}"
    );
    assert_eq!(
        res.header("atproto-content-labelers"),
        Some(format!("{did};redact").as_str())
    );
    let res = http_request(server.addr, "GET", &path, &[], None).await;
    assert_eq!(
        res.header("atproto-content-labelers"),
        Some(format!("{L1};redact").as_str())
    );

    // Operator takedowns, and a trusted labeler's.
    client
        .execute(
            "INSERT INTO takedowns (subject, reason) VALUES ($1, 'test')",
            &[&post],
        )
        .await
        .unwrap();
    let (_, body) = server
        .get("app.bsky.feed.getPosts", &format!("uris={post}"))
        .await;
    assert_eq!(body["posts"], serde_json::json!([]));
    let (status, body) = server
        .get("app.bsky.feed.getPostThread", &format!("uri={post}"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("NotFound")),
        "{body}"
    );
    client.execute("DELETE FROM takedowns", &[]).await.unwrap();
    let (_, body) = server
        .get("app.bsky.feed.getPosts", &format!("uris={post}"))
        .await;
    assert_eq!(body["posts"][0]["uri"], post.as_str());

    client
        .execute(
            "INSERT INTO takedowns (subject, reason) VALUES ($1, 'test')",
            &[&did],
        )
        .await
        .unwrap();
    let (status, body) = server
        .get("app.bsky.actor.getProfile", &format!("actor={did}"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("AccountTakedown")),
        "{body}"
    );
    let (_, body) = server
        .get("app.bsky.feed.getPosts", &format!("uris={post}"))
        .await;
    assert_eq!(body["posts"], serde_json::json!([]));
    client.execute("DELETE FROM takedowns", &[]).await.unwrap();
    let (status, _) = server
        .get("app.bsky.actor.getProfile", &format!("actor={did}"))
        .await;
    assert_eq!(status, 200);

    label(&client, L2, &other, "!takedown", false, None).await;
    label(&client, L1, &other, "!takedown", false, None).await;
    let (_, body) = server
        .get("app.bsky.feed.getPosts", &format!("uris={other}"))
        .await;
    assert_eq!(body["posts"], serde_json::json!([]));
    client
        .execute(
            "UPDATE labels SET neg = true WHERE val = '!takedown' AND uri = $1",
            &[&other],
        )
        .await
        .unwrap();
    let (_, body) = server
        .get("app.bsky.feed.getPosts", &format!("uris={other}"))
        .await;
    assert_eq!(body["posts"][0]["uri"], other.as_str());

    // queryLabels: subjects and labelers named, in pages.
    let query = format!("uriPatterns={post}&uriPatterns={did}&sources={L1}&sources={L2}&limit=2");
    let (status, body) = server.get("com.atproto.label.queryLabels", &query).await;
    assert_eq!(status, 200, "{body}");
    let mut seen = vals(&body["labels"]);
    let mut cursor = body["cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let (_, body) = server
            .get(
                "com.atproto.label.queryLabels",
                &format!("{query}&cursor={c}"),
            )
            .await;
        seen.extend(vals(&body["labels"]));
        cursor = body["cursor"].as_str().map(str::to_owned);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            l1("impersonation"),
            l1("porn"),
            l1("rude"),
            (L2.to_owned(), "graphic-media".to_owned()),
        ]
    );
    for bad in [
        format!("uriPatterns=at://{did}/*&sources={L1}"),
        format!("uriPatterns={post}"),
    ] {
        let (status, body) = server.get("com.atproto.label.queryLabels", &bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("InvalidRequest")),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_show_on_list_and_feed_generator_views() {
    let server = Server::start(|c| {
        c.labelers = vec![L1.to_owned()];
    })
    .await;
    let of = |collection: &str| {
        fixture()
            .truth
            .records
            .keys()
            .find(|uri| uri.contains(&format!("/{collection}/")))
            .cloned()
            .unwrap_or_else(|| panic!("the simulated network has a {collection}"))
    };
    let (list, generator) = (of("app.bsky.graph.list"), of("app.bsky.feed.generator"));
    let client = db().await;
    label(&client, L1, &list, "list-label", false, None).await;
    label(&client, L1, &generator, "feed-label", false, None).await;
    let l1 = |v: &str| (L1.to_owned(), v.to_owned());

    let (status, body) = server
        .get("app.bsky.graph.getList", &format!("list={list}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(moderation(&body["list"]["labels"]), vec![l1("list-label")]);

    let creator = generator
        .strip_prefix("at://")
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    let (status, body) = server
        .get("app.bsky.feed.getActorFeeds", &format!("actor={creator}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let feed = body["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["uri"] == generator.as_str())
        .unwrap_or_else(|| panic!("{generator} among its creator's feeds: {body}"));
    assert_eq!(moderation(&feed["labels"]), vec![l1("feed-label")]);
}
