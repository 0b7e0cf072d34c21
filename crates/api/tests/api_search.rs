//! Post and actor search over a simulated index: a post is found by a word of
//! its text with both sorts, filters narrow results to what they name,
//! pagination walks every hit once, responses validate against the official
//! lexicons, and bad parameters get a 400 naming them.

mod common;

use std::collections::HashSet;

use common::{fixture, validate_with_official_lexicons, Server};
use serde_json::Value;
use skyhose_proto::datetime::civil_from_days;
use skyhose_proto::tid::Tid;

type Cases = Vec<(String, String, Value)>;

const SEARCH: &str = "app.bsky.feed.searchPosts";

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn db() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&fixture().database_url, tokio_postgres::NoTls)
        .await
        .expect("fixture database");
    tokio::spawn(conn);
    client
}

/// Every page of a listing, recording the first pages for validation.
async fn page_all(
    server: &Server,
    nsid: &str,
    query: &str,
    key: &str,
    limit: usize,
    cases: &mut Cases,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..500 {
        let q = match &cursor {
            Some(c) => format!("{query}&limit={limit}&cursor={}", enc(c)),
            None => format!("{query}&limit={limit}"),
        };
        let (status, body) = server.get(nsid, &q).await;
        assert_eq!(status, 200, "{nsid}?{q}: {body}");
        let got = body[key].as_array().expect("items").clone();
        assert!(got.len() <= limit);
        if page < 2 {
            cases.push((nsid.into(), format!("{query} page {page}"), body.clone()));
        }
        items.extend(got);
        match body["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
    panic!("{nsid}?{query}: too many pages");
}

fn uris(posts: &[Value]) -> Vec<String> {
    posts
        .iter()
        .map(|p| p["uri"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn rkey(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap_or_default()
}

fn engagement(p: &Value) -> i64 {
    ["likeCount", "repostCount", "replyCount"]
        .iter()
        .map(|k| p[*k].as_i64().unwrap_or(0))
        .sum()
}

/// Posts by served authors matching `where_sql` (over `p`, with `$1`).
async fn served_count(client: &tokio_postgres::Client, where_sql: &str, arg: &str) -> usize {
    let sql = format!(
        "SELECT count(*) FROM posts p JOIN actors a ON a.did = p.did AND a.status = 'active' AND a.indexed \
         WHERE {where_sql}"
    );
    client
        .query_one(&sql, &[&arg])
        .await
        .expect("count")
        .get::<_, i64>(0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_found_by_a_distinctive_word_with_both_sorts() {
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();

    // The rarest word of served posts' texts that a few posts share (in the
    // simulated texts those are mentioned handles), read from the database.
    let row = client
        .query_one(
            "SELECT s.word, s.ndoc FROM ts_stat($$SELECT to_tsvector('simple', COALESCE(p.text, '')) \
               FROM posts p JOIN actors a ON a.did = p.did AND a.status = 'active'$$) s \
             WHERE s.word ~ '^[a-z][a-z0-9.]{3,}$' AND s.ndoc BETWEEN 4 AND 40 ORDER BY s.ndoc, s.word LIMIT 1",
            &[],
        )
        .await
        .expect("a distinctive word");
    let word: String = row.get(0);
    let post: String = client
        .query_one(
            "SELECT p.uri FROM posts p JOIN actors a ON a.did = p.did AND a.status = 'active' \
             WHERE to_tsvector('simple', COALESCE(p.text, '')) @@ to_tsquery('simple', $1) ORDER BY p.uri LIMIT 1",
            &[&word],
        )
        .await
        .expect("a post with the word")
        .get(0);
    let expected = served_count(
        &client,
        "to_tsvector('simple', COALESCE(p.text, '')) @@ to_tsquery('simple', $1)",
        &word,
    )
    .await;

    let latest = page_all(
        &server,
        SEARCH,
        &format!("q={}&sort=latest", enc(&word)),
        "posts",
        3,
        &mut cases,
    )
    .await;
    let top = page_all(
        &server,
        SEARCH,
        &format!("q={}&sort=top", enc(&word)),
        "posts",
        3,
        &mut cases,
    )
    .await;
    for (sort, posts) in [("latest", &latest), ("top", &top)] {
        assert!(
            uris(posts).contains(&post),
            "{sort}: {post} not found by {word:?}"
        );
        assert_eq!(posts.len(), expected, "{sort}: every hit once");
        assert_eq!(
            uris(posts).into_iter().collect::<HashSet<_>>().len(),
            expected
        );
        for p in posts.iter() {
            let text = p["record"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            assert!(text.contains(&word), "{sort}: {text:?} lacks {word:?}");
        }
    }
    for pair in latest.windows(2) {
        let (a, b) = (
            pair[0]["uri"].as_str().unwrap(),
            pair[1]["uri"].as_str().unwrap(),
        );
        assert!(rkey(a) >= rkey(b), "latest is newest first");
    }
    for pair in top.windows(2) {
        assert!(
            engagement(&pair[0]) >= engagement(&pair[1]),
            "top ranks by engagement"
        );
    }

    // A frequent word: top's first page is the most engaging of many.
    let (status, body) = server.get(SEARCH, "q=garden&sort=top&limit=25").await;
    assert_eq!(status, 200, "{body}");
    let first = body["posts"].as_array().expect("posts").clone();
    assert_eq!(first.len(), 25);
    cases.push((SEARCH.into(), "garden top".into(), body.clone()));
    let cursor = body["cursor"].as_str().expect("a next page").to_owned();
    let (status, body) = server
        .get(
            SEARCH,
            &format!("q=garden&sort=top&limit=25&cursor={}", enc(&cursor)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = body["posts"].as_array().expect("posts").clone();
    assert!(engagement(&first[24]) >= engagement(&second[0]));
    assert!(uris(&first).iter().all(|u| !uris(&second).contains(u)));
    cases.push((SEARCH.into(), "garden top page 2".into(), body));
    // A phrase and an exclusion, in web-search syntax.
    let (status, body) = server
        .get(SEARCH, &format!("q={}", enc("garden -harbor")))
        .await;
    assert_eq!(status, 200, "{body}");
    for p in body["posts"].as_array().expect("posts") {
        let text = p["record"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            text.contains("garden") && !text.contains("harbor"),
            "{text:?}"
        );
    }

    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_to_what_they_name() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();

    // author, as a parameter (DID) and as `from:` in q (handle).
    let (did, handle) = fx
        .truth
        .actors
        .iter()
        .filter(|(_, a)| a.status == "active" && a.handle.is_some())
        .max_by_key(|(_, a)| a.posts)
        .map(|(d, a)| (d.clone(), a.handle.clone().unwrap_or_default()))
        .expect("an active author");
    let by_param = page_all(
        &server,
        SEARCH,
        &format!("q=garden&author={}", enc(&did)),
        "posts",
        10,
        &mut cases,
    )
    .await;
    let by_op = page_all(
        &server,
        SEARCH,
        &format!("q={}", enc(&format!("garden from:{handle}"))),
        "posts",
        10,
        &mut cases,
    )
    .await;
    assert!(!by_param.is_empty());
    assert_eq!(uris(&by_param), uris(&by_op));
    assert!(by_param.iter().all(|p| p["author"]["did"] == did.as_str()));
    let expected = served_count(
        &client,
        "p.did = $1 AND to_tsvector('simple', COALESCE(p.text, '')) @@ to_tsquery('simple', 'garden')",
        &did,
    )
    .await;
    assert_eq!(by_param.len(), expected);

    // lang
    let ja = page_all(&server, SEARCH, "q=garden&lang=ja", "posts", 50, &mut cases).await;
    assert!(!ja.is_empty());
    for p in &ja {
        let langs = p["record"]["langs"].as_array().expect("langs");
        assert!(langs.iter().any(|l| l == "ja"), "{langs:?}");
    }

    // mentions, with only an operator in q
    let mentioned: String = client
        .query_one(
            "SELECT f #>> '{features,0,did}' FROM posts p, jsonb_array_elements(p.facets) f \
             JOIN actors a ON true WHERE a.did = p.did AND a.status = 'active' \
               AND f #>> '{features,0,$type}' = 'app.bsky.richtext.facet#mention' \
             GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            &[],
        )
        .await
        .expect("a mentioned account")
        .get(0);
    let mentions = page_all(
        &server,
        SEARCH,
        &format!("q={}", enc(&format!("mentions:{mentioned}"))),
        "posts",
        25,
        &mut cases,
    )
    .await;
    assert!(!mentions.is_empty());
    for p in &mentions {
        let facets = p["record"]["facets"].to_string();
        assert!(facets.contains(&mentioned), "{facets}");
    }
    let expected = served_count(
        &client,
        "p.facets @> jsonb_build_array(jsonb_build_object('features', jsonb_build_array(jsonb_build_object('did', $1::text))))",
        &mentioned,
    )
    .await;
    assert_eq!(mentions.len(), expected);

    // tag (facet or tags field), AND-ed with the text
    let tagged = page_all(&server, SEARCH, "q=sky&tag=coffee", "posts", 25, &mut cases).await;
    assert!(!tagged.is_empty());
    for p in &tagged {
        let record = p["record"].to_string();
        assert!(
            record.contains("\"tag\":\"coffee\"") || record.contains("\"coffee\""),
            "{record}"
        );
    }

    // domain: external embeds and link facets to the host
    let linked = page_all(
        &server,
        SEARCH,
        &format!("q={}", enc("domain:example.sim.test")),
        "posts",
        50,
        &mut cases,
    )
    .await;
    assert!(!linked.is_empty());
    for p in &linked {
        assert!(
            p["record"].to_string().contains("://example.sim.test"),
            "{}",
            p["record"]
        );
    }
    let news = page_all(
        &server,
        SEARCH,
        "q=*&domain=news.sim.test",
        "posts",
        50,
        &mut cases,
    )
    .await;
    assert!(!news.is_empty());

    // since/until on the post's TID time
    let all = page_all(
        &server,
        SEARCH,
        "q=garden&sort=latest",
        "posts",
        100,
        &mut cases,
    )
    .await;
    let middle = all[all.len() / 2]["uri"].as_str().expect("uri").to_owned();
    let micros = Tid::parse(rkey(&middle)).expect("TID rkey").micros();
    let at = |m: i64| {
        let secs = m / 1_000_000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, mo, d) = civil_from_days(days);
        format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            m % 1_000_000
        )
    };
    let since = at(micros);
    let newer = page_all(
        &server,
        SEARCH,
        &format!("q=garden&since={}", enc(&since)),
        "posts",
        100,
        &mut cases,
    )
    .await;
    let older = page_all(
        &server,
        SEARCH,
        &format!("q=garden&until={}", enc(&since)),
        "posts",
        100,
        &mut cases,
    )
    .await;
    assert!(uris(&newer).contains(&middle), "since is inclusive");
    assert!(!uris(&older).contains(&middle), "until is exclusive");
    assert_eq!(newer.len() + older.len(), all.len());
    let window = page_all(
        &server,
        SEARCH,
        &format!(
            "q={}",
            enc(&format!("garden since:{since} until:{}", at(micros + 1)))
        ),
        "posts",
        100,
        &mut cases,
    )
    .await;
    assert_eq!(uris(&window), vec![middle.clone()]);

    // Nobody by that name: no posts, not an error.
    let (status, body) = server.get(SEARCH, "q=garden&author=nobody.sim.test").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["posts"].as_array().map(Vec::len), Some(0));

    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_by_handle_display_name_and_description() {
    let fx = fixture();
    let server = Server::start(|_| {}).await;
    let client = db().await;
    let mut cases = Cases::new();
    let row = client
        .query_one(
            "SELECT a.did, a.handle, p.display_name FROM actors a JOIN profiles p ON p.did = a.did \
             WHERE a.status = 'active' AND a.indexed AND a.handle IS NOT NULL AND p.display_name <> '' \
             ORDER BY a.did LIMIT 1",
            &[],
        )
        .await
        .expect("an actor with a profile");
    let (did, handle, name): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert!(fx.truth.actors.contains_key(&did));

    // The exact handle comes first, with or without `@`, by `q` or `term`.
    for query in [
        format!("q={}", enc(&handle)),
        format!("q={}", enc(&format!("@{}", handle.to_uppercase()))),
        format!("term={}", enc(&handle)),
    ] {
        let (status, body) = server.get("app.bsky.actor.searchActors", &query).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["actors"][0]["did"], did.as_str(), "{query}");
        cases.push(("app.bsky.actor.searchActors".into(), query, body));
    }

    // A handle prefix: every result's handle starts with it or its profile
    // has it as a word; paging walks them all once.
    let prefix: String = handle.chars().take(4).collect();
    let found = page_all(
        &server,
        "app.bsky.actor.searchActors",
        &format!("q={}", enc(&prefix)),
        "actors",
        5,
        &mut cases,
    )
    .await;
    let handles: Vec<&str> = found.iter().filter_map(|a| a["handle"].as_str()).collect();
    assert!(handles.len() > 5, "{handles:?}");
    assert_eq!(handles.iter().collect::<HashSet<_>>().len(), handles.len());
    let prefixed: i64 = client
        .query_one(
            "SELECT count(*) FROM actors WHERE status = 'active' AND indexed AND handle LIKE $1 || '%'",
            &[&prefix],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        handles.iter().filter(|h| h.starts_with(&prefix)).count() as i64,
        prefixed
    );
    let first_other = handles
        .iter()
        .position(|h| !h.starts_with(&prefix))
        .unwrap_or(handles.len());
    assert!(
        handles[first_other..]
            .iter()
            .all(|h| !h.starts_with(&prefix)),
        "handle matches rank first"
    );

    // Display name: a prefix and a whole word, in any case.
    let word = name.split_whitespace().next().expect("a word").to_owned();
    let by_name = page_all(
        &server,
        "app.bsky.actor.searchActors",
        &format!("q={}", enc(&word.to_uppercase())),
        "actors",
        100,
        &mut cases,
    )
    .await;
    assert!(by_name.iter().any(|a| a["did"] == did.as_str()));
    assert!(by_name.iter().all(|a| {
        let text =
            format!("{} {} {}", a["handle"], a["displayName"], a["description"]).to_lowercase();
        text.contains(&word.to_lowercase())
    }));

    // Typeahead: prefixes of handles and of the words of names.
    let partial: String = word.chars().take(3).collect();
    let (status, body) = server
        .get(
            "app.bsky.actor.searchActorsTypeahead",
            &format!("q={}&limit=100", enc(&partial)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let actors = body["actors"].as_array().expect("actors");
    assert!(!actors.is_empty());
    for a in actors {
        let text =
            format!("{} {} {}", a["handle"], a["displayName"], a["description"]).to_lowercase();
        assert!(text.contains(&partial.to_lowercase()), "{text}");
    }
    cases.push(("app.bsky.actor.searchActorsTypeahead".into(), partial, body));
    let (status, body) = server
        .get(
            "app.bsky.actor.searchActorsTypeahead",
            &format!("term={}", enc(&handle)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["actors"][0]["did"], did.as_str());
    assert!(
        body["actors"].as_array().is_some_and(|a| a.len() <= 10),
        "default limit"
    );
    cases.push((
        "app.bsky.actor.searchActorsTypeahead".into(),
        handle.clone(),
        body,
    ));

    // Nothing to search for: nothing found.
    for nsid in [
        "app.bsky.actor.searchActors",
        "app.bsky.actor.searchActorsTypeahead",
    ] {
        let (status, body) = server.get(nsid, "q=%20").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["actors"].as_array().map(Vec::len), Some(0));
        let (status, body) = server.get(nsid, "q=%26%7C!%3A*()").await;
        assert_eq!(status, 200, "{body}");
    }

    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_search_parameters_are_named() {
    let server = Server::start(|_| {}).await;
    let (_, latest) = server.get(SEARCH, "q=garden&limit=1").await;
    let latest_cursor = latest["cursor"].as_str().expect("a cursor").to_owned();
    let top_cursor_for_latest = format!("q=garden&sort=top&cursor={}", enc(&latest_cursor));
    for (nsid, query, param) in [
        (SEARCH, "", "q"),
        (SEARCH, "q=garden&sort=best", "sort"),
        (SEARCH, "q=garden&limit=0", "limit"),
        (SEARCH, "q=garden&limit=101", "limit"),
        (SEARCH, "q=garden&lang=EN_us", "lang"),
        (SEARCH, "q=garden&since=yesterday", "since"),
        (SEARCH, "q=garden&until=2024-02-30T25:00:00Z", "until"),
        (SEARCH, "q=garden%20since:soon", "since"),
        (SEARCH, "q=garden&author=not!a!handle", "author"),
        (SEARCH, "q=garden&mentions=did:plc:", "mentions"),
        (SEARCH, "q=garden&url=no%20scheme", "url"),
        (SEARCH, "q=garden&cursor=bm9uZXdsaW5l", "cursor"),
        (SEARCH, &top_cursor_for_latest as &str, "cursor"),
        ("app.bsky.actor.searchActors", "q=a&limit=101", "limit"),
        ("app.bsky.actor.searchActors", "q=a&cursor=%%", "cursor"),
        (
            "app.bsky.actor.searchActorsTypeahead",
            "q=a&limit=0",
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
