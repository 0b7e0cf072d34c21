//! Private state (mutes, bookmarks, notification state and preferences,
//! activity subscriptions, push registrations, actor preferences): written
//! by POSTed procedures for the token's issuer only, idempotently, shown in
//! the views that hydrate it, and refused with the official error names
//! when the token or the input is wrong. Outputs are checked against the
//! official lexicons.

mod common;

use common::viewer::{db, enc, server_with_plc, token, Cases};
use common::{validate_with_official_lexicons, Server};
use serde_json::{json, Value};
use skyhose_sim::plc::{self, PlcHandle};

/// A viewer's calls: each with a token for its own method.
struct As<'a> {
    server: &'a Server,
    plc: &'a PlcHandle,
    did: String,
}

impl As<'_> {
    async fn get(&self, nsid: &str, query: &str) -> Value {
        let (status, body) = self
            .server
            .get_with(nsid, query, Some(&token(self.plc, &self.did, nsid)))
            .await;
        assert_eq!(status, 200, "{nsid}?{query}: {body}");
        body
    }

    /// A procedure: status, content type (empty when none), body.
    async fn post(&self, nsid: &str, input: Value) -> (u16, String, Vec<u8>) {
        post(
            self.server,
            nsid,
            &input,
            Some(&token(self.plc, &self.did, nsid)),
        )
        .await
    }

    /// A procedure without output: 200, an empty body, no content type.
    async fn ok(&self, nsid: &str, input: Value) {
        let (status, head, body) = self.post(nsid, input.clone()).await;
        assert_eq!(
            status,
            200,
            "{nsid} {input}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(body.is_empty(), "{nsid}: a body without output");
        assert!(
            head.is_empty(),
            "{nsid}: no content type without output: {head}"
        );
    }

    /// A procedure with output: its JSON.
    async fn call(&self, nsid: &str, input: Value) -> Value {
        let (status, _, body) = self.post(nsid, input).await;
        let body: Value = serde_json::from_slice(&body).expect("JSON output");
        assert_eq!(status, 200, "{nsid}: {body}");
        body
    }
}

/// A procedure: status, content type (empty when none), body.
async fn post(
    server: &Server,
    nsid: &str,
    input: &Value,
    bearer: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let res = server.post_with(nsid, input, bearer).await;
    let content_type = res.header("content-type").unwrap_or_default().to_owned();
    (res.status, content_type, res.body)
}

struct World {
    a: String,
    b: String,
    post: (String, String),
    list: String,
    member: String,
}

async fn world() -> World {
    let client = db().await;
    let actors = client
        .query(
            "SELECT did FROM actors WHERE indexed AND status = 'active' AND posts > 0 \
             ORDER BY did LIMIT 2",
            &[],
        )
        .await
        .expect("actors");
    let a: String = actors[0].get("did");
    let b: String = actors[1].get("did");
    let post = client
        .query_one(
            "SELECT uri, cid FROM posts WHERE did = $1 AND reply_root_uri IS NULL \
             ORDER BY uri LIMIT 1",
            &[&b],
        )
        .await
        .expect("a post of b");
    let list = client
        .query_one(
            "SELECT l.uri, li.subject_did FROM lists l \
             JOIN list_items li ON li.list_uri = l.uri \
             JOIN actors m ON m.did = li.subject_did AND m.indexed AND m.status = 'active' \
             JOIN actors c ON c.did = l.did AND c.indexed AND c.status = 'active' \
             WHERE l.name IS NOT NULL AND l.purpose IS NOT NULL \
               AND li.subject_did <> ALL($1) AND l.did <> ALL($1) \
             ORDER BY l.uri LIMIT 1",
            &[&vec![a.clone(), b.clone()]],
        )
        .await
        .expect("a list with a member");
    World {
        a,
        b,
        post: (post.get("uri"), post.get("cid")),
        list: list.get("uri"),
        member: list.get("subject_did"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_state_is_written_for_the_issuer_and_shown_in_views() {
    let (server, plc) = server_with_plc().await;
    let w = world().await;
    let alice = As {
        server: &server,
        plc: &plc,
        did: w.a.clone(),
    };
    let bob = As {
        server: &server,
        plc: &plc,
        did: w.b.clone(),
    };
    let mut cases: Cases = Vec::new();
    let mut record = |nsid: &str, label: &str, body: &Value| {
        cases.push((nsid.into(), label.into(), body.clone()));
    };

    // Actor mutes: idempotent, listed, flagged on the profile.
    let mute = json!({"actor": w.b});
    alice.ok("app.bsky.graph.muteActor", mute.clone()).await;
    alice.ok("app.bsky.graph.muteActor", mute.clone()).await;
    let mutes = alice.get("app.bsky.graph.getMutes", "").await;
    record("app.bsky.graph.getMutes", "one mute", &mutes);
    let listed: Vec<&str> = mutes["mutes"]
        .as_array()
        .expect("mutes")
        .iter()
        .filter_map(|p| p["did"].as_str())
        .collect();
    assert_eq!(listed, vec![w.b.as_str()], "{mutes}");
    assert_eq!(mutes["mutes"][0]["viewer"]["muted"], true);
    let profile = alice
        .get("app.bsky.actor.getProfile", &format!("actor={}", enc(&w.b)))
        .await;
    assert_eq!(profile["viewer"]["muted"], true, "{profile}");
    let theirs = bob.get("app.bsky.graph.getMutes", "").await;
    assert_eq!(theirs["mutes"], json!([]), "bob's mutes are his own");
    let not_muted = bob
        .get("app.bsky.actor.getProfile", &format!("actor={}", enc(&w.a)))
        .await;
    assert_eq!(not_muted["viewer"]["muted"], false);

    // A scoped mute replaces the full one and is not listed.
    alice
        .ok(
            "app.bsky.graph.muteActor",
            json!({"actor": w.b, "onlyReposts": true}),
        )
        .await;
    let profile = alice
        .get("app.bsky.actor.getProfile", &format!("actor={}", enc(&w.b)))
        .await;
    assert_eq!(profile["viewer"]["muted"], false, "{profile}");
    assert_eq!(profile["viewer"]["mutedOnlyReposts"], true, "{profile}");
    let mutes = alice.get("app.bsky.graph.getMutes", "").await;
    assert_eq!(mutes["mutes"], json!([]));
    alice.ok("app.bsky.graph.unmuteActor", mute.clone()).await;
    alice.ok("app.bsky.graph.unmuteActor", mute.clone()).await;
    let profile = alice
        .get("app.bsky.actor.getProfile", &format!("actor={}", enc(&w.b)))
        .await;
    assert_eq!(profile["viewer"]["mutedOnlyReposts"], false);

    // List mutes: listed, and the members are muted by the list.
    let list = json!({"list": w.list});
    alice.ok("app.bsky.graph.muteActorList", list.clone()).await;
    alice.ok("app.bsky.graph.muteActorList", list.clone()).await;
    let lists = alice.get("app.bsky.graph.getListMutes", "").await;
    record("app.bsky.graph.getListMutes", "one list", &lists);
    assert_eq!(lists["lists"][0]["uri"], w.list.as_str(), "{lists}");
    assert_eq!(lists["lists"][0]["viewer"]["muted"], true, "{lists}");
    let member = alice
        .get(
            "app.bsky.actor.getProfile",
            &format!("actor={}", enc(&w.member)),
        )
        .await;
    record("app.bsky.actor.getProfile", "muted by a list", &member);
    assert_eq!(member["viewer"]["muted"], true, "{member}");
    assert_eq!(
        member["viewer"]["mutedByList"]["uri"],
        w.list.as_str(),
        "{member}"
    );
    alice.ok("app.bsky.graph.unmuteActorList", list).await;
    let lists = alice.get("app.bsky.graph.getListMutes", "").await;
    assert_eq!(lists["lists"], json!([]));

    // Bookmarks: idempotent, counted over accounts, the viewer's own.
    let (uri, cid) = &w.post;
    let bookmark = json!({"uri": uri, "cid": cid});
    alice
        .ok("app.bsky.bookmark.createBookmark", bookmark.clone())
        .await;
    alice
        .ok("app.bsky.bookmark.createBookmark", bookmark.clone())
        .await;
    let bookmarks = alice.get("app.bsky.bookmark.getBookmarks", "").await;
    record("app.bsky.bookmark.getBookmarks", "one bookmark", &bookmarks);
    let items = bookmarks["bookmarks"].as_array().expect("bookmarks");
    assert_eq!(items.len(), 1, "{bookmarks}");
    assert_eq!(items[0]["subject"], bookmark);
    assert_eq!(items[0]["item"]["uri"], uri.as_str());
    assert_eq!(items[0]["item"]["bookmarkCount"], 1);
    assert_eq!(items[0]["item"]["viewer"]["bookmarked"], true);
    let seen_by_bob = bob
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    assert_eq!(seen_by_bob["posts"][0]["bookmarkCount"], 1);
    assert_eq!(seen_by_bob["posts"][0]["viewer"]["bookmarked"], false);
    let (_, anonymous) = server
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    assert_eq!(anonymous["posts"][0]["bookmarkCount"], 1);
    // Bob deleting "his" bookmark of the post leaves alice's.
    bob.ok("app.bsky.bookmark.deleteBookmark", json!({"uri": uri}))
        .await;
    let (_, after) = server
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    assert_eq!(after["posts"][0]["bookmarkCount"], 1);
    alice
        .ok("app.bsky.bookmark.deleteBookmark", json!({"uri": uri}))
        .await;
    let (_, after) = server
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    assert_eq!(after["posts"][0]["bookmarkCount"], 0);
    let (status, _, body) = alice
        .post(
            "app.bsky.bookmark.createBookmark",
            json!({"uri": format!("at://{}/app.bsky.feed.like/3k", w.a), "cid": cid}),
        )
        .await;
    let body: Value = serde_json::from_slice(&body).expect("error JSON");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("UnsupportedCollection"))
    );

    // Thread mutes show on the thread's posts (the post is a thread root).
    alice
        .ok("app.bsky.graph.muteThread", json!({"root": uri}))
        .await;
    let muted = alice
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    assert_eq!(muted["posts"][0]["viewer"]["threadMuted"], true, "{muted}");
    alice
        .ok("app.bsky.graph.unmuteThread", json!({"root": uri}))
        .await;
    let unmuted = alice
        .get("app.bsky.feed.getPosts", &format!("uris={}", enc(uri)))
        .await;
    assert_eq!(unmuted["posts"][0]["viewer"]["threadMuted"], false);

    // updateSeen marks every notification read.
    let unread = alice.get("app.bsky.notification.getUnreadCount", "").await;
    let before = alice
        .get("app.bsky.notification.listNotifications", "limit=10")
        .await;
    assert!(
        before["seenAt"].is_null(),
        "no seenAt before updateSeen: {before}"
    );
    alice
        .ok(
            "app.bsky.notification.updateSeen",
            json!({"seenAt": "2100-01-01T00:00:00.000Z"}),
        )
        .await;
    let after = alice
        .get("app.bsky.notification.listNotifications", "limit=10")
        .await;
    record(
        "app.bsky.notification.listNotifications",
        "after updateSeen",
        &after,
    );
    assert_eq!(after["seenAt"], "2100-01-01T00:00:00.000Z");
    let notifications = after["notifications"].as_array().expect("notifications");
    assert!(notifications.iter().all(|n| n["isRead"] == true), "{after}");
    let cleared = alice.get("app.bsky.notification.getUnreadCount", "").await;
    assert_eq!(cleared["count"], 0, "was {unread}");

    // Notification preferences: defaults, then what was put over them.
    let defaults = alice.get("app.bsky.notification.getPreferences", "").await;
    record(
        "app.bsky.notification.getPreferences",
        "defaults",
        &defaults,
    );
    assert_eq!(
        defaults["preferences"]["like"],
        json!({"include": "all", "list": true, "push": true})
    );
    let like = json!({"include": "follows", "list": false, "push": true});
    let put = alice
        .call(
            "app.bsky.notification.putPreferencesV2",
            json!({"like": like, "verified": {"list": false, "push": false}}),
        )
        .await;
    record("app.bsky.notification.putPreferencesV2", "like", &put);
    assert_eq!(put["preferences"]["like"], like);
    assert_eq!(
        put["preferences"]["verified"],
        json!({"list": false, "push": false})
    );
    let again = alice
        .call(
            "app.bsky.notification.putPreferencesV2",
            json!({"reply": {"include": "all", "list": true, "push": false}}),
        )
        .await;
    assert_eq!(again["preferences"]["like"], like, "kept: {again}");
    let got = alice.get("app.bsky.notification.getPreferences", "").await;
    assert_eq!(got, again);

    // Activity subscriptions.
    let sub = json!({"subject": w.b, "activitySubscription": {"post": true, "reply": false}});
    let out = alice
        .call("app.bsky.notification.putActivitySubscription", sub.clone())
        .await;
    record("app.bsky.notification.putActivitySubscription", "on", &out);
    assert_eq!(out, sub);
    let subs = alice
        .get("app.bsky.notification.listActivitySubscriptions", "")
        .await;
    record(
        "app.bsky.notification.listActivitySubscriptions",
        "one",
        &subs,
    );
    assert_eq!(subs["subscriptions"][0]["did"], w.b.as_str(), "{subs}");
    let off = alice
        .call(
            "app.bsky.notification.putActivitySubscription",
            json!({"subject": w.b, "activitySubscription": {"post": false, "reply": false}}),
        )
        .await;
    assert_eq!(off, json!({"subject": w.b}));
    let subs = alice
        .get("app.bsky.notification.listActivitySubscriptions", "")
        .await;
    assert_eq!(subs["subscriptions"], json!([]));

    // Push registrations are stored and removed.
    let push = json!({"serviceDid": "did:web:push.test", "token": "t1", "platform": "web", "appId": "xyz.app"});
    alice
        .ok("app.bsky.notification.registerPush", push.clone())
        .await;
    alice
        .ok("app.bsky.notification.registerPush", push.clone())
        .await;
    alice.ok("app.bsky.notification.unregisterPush", push).await;

    // Actor preferences, as a PDS that forwards them puts them.
    let empty = alice.get("app.bsky.actor.getPreferences", "").await;
    assert_eq!(empty, json!({"preferences": []}));
    let prefs = json!([{"$type": "app.bsky.actor.defs#adultContentPref", "enabled": false}]);
    alice
        .ok(
            "app.bsky.actor.putPreferences",
            json!({"preferences": prefs}),
        )
        .await;
    let got = alice.get("app.bsky.actor.getPreferences", "").await;
    record("app.bsky.actor.getPreferences", "one", &got);
    assert_eq!(got["preferences"], prefs);
    let bobs = bob.get("app.bsky.actor.getPreferences", "").await;
    assert_eq!(bobs["preferences"], json!([]));

    validate_with_official_lexicons(&cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_inputs_are_refused_with_official_names() {
    let (server, plc) = server_with_plc().await;
    let w = world().await;
    let nsid = "app.bsky.graph.muteActor";
    let input = json!({"actor": w.b});
    let refused = |(status, _, body): (u16, String, Vec<u8>)| {
        let body: Value = serde_json::from_slice(&body).expect("error JSON");
        (
            status,
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let expect = |got: (u16, String), status: u16, name: &str| {
        assert_eq!(got, (status, name.to_owned()));
    };

    expect(
        refused(post(&server, nsid, &input, None).await),
        401,
        "AuthMissing",
    );
    let fixture = &common::fixture().sim;
    plc.register(&w.a, "a.test");
    let wrong_method = plc::mint_service_auth(
        fixture,
        &w.a,
        common::viewer::AUD,
        "app.bsky.graph.unmuteActor",
        60,
    );
    expect(
        refused(post(&server, nsid, &input, Some(&wrong_method)).await),
        401,
        "BadJwtLexiconMethod",
    );
    let other_audience = plc::mint_service_auth(fixture, &w.a, "did:web:other.test", nsid, 60);
    expect(
        refused(post(&server, nsid, &input, Some(&other_audience)).await),
        401,
        "BadJwtAudience",
    );
    let now = plc::unix_now();
    let expired = plc::sign_jwt(
        fixture,
        &w.a,
        &json!({"iss": w.a, "aud": common::viewer::AUD, "lxm": nsid, "iat": now - 7200, "exp": now - 3600}),
    );
    expect(
        refused(post(&server, nsid, &input, Some(&expired)).await),
        401,
        "JwtExpired",
    );
    // A token claiming to be a, signed by b.
    plc.register(&w.b, "b.test");
    let forged = plc::sign_jwt(
        fixture,
        &w.b,
        &json!({"iss": w.a, "aud": common::viewer::AUD, "lxm": nsid, "exp": now + 60}),
    );
    expect(
        refused(post(&server, nsid, &input, Some(&forged)).await),
        401,
        "BadJwtSignature",
    );
    let good = token(&plc, &w.a, nsid);
    let (header_claims, _) = good.rsplit_once('.').expect("a JWT");
    let unsigned = format!("{header_claims}.");
    expect(
        refused(post(&server, nsid, &input, Some(&unsigned)).await),
        401,
        "BadJwt",
    );

    // Bad input names the field.
    for (bad, why) in [
        (json!({}), "required"),
        (json!({"actor": 5}), "string"),
        (json!({"actor": "not a handle!"}), "actor"),
        (json!([1, 2]), "object"),
    ] {
        let (status, _, body) = post(&server, nsid, &bad, Some(&good)).await;
        let body: Value = serde_json::from_slice(&body).expect("error JSON");
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "InvalidRequest");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{bad}: {message}");
    }
    // Muting oneself is refused.
    let (status, _, _) = post(&server, nsid, &json!({"actor": w.a}), Some(&good)).await;
    assert_eq!(status, 400);

    // Each verb for its kind of method.
    let (status, body) = server
        .get_with(nsid, &format!("actor={}", enc(&w.b)), Some(&good))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("InvalidRequest"))
    );
    let query = "app.bsky.graph.getMutes";
    let (status, _, body) = post(&server, query, &json!({}), Some(&token(&plc, &w.a, query))).await;
    let body: Value = serde_json::from_slice(&body).expect("error JSON");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("InvalidRequest"))
    );
    let (status, _, _) = post(&server, "app.bsky.unknown.method", &json!({}), Some(&good)).await;
    assert_eq!(status, 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_procedure_refuses_hostile_input_with_a_clear_400() {
    let (server, plc) = server_with_plc().await;
    let w = world().await;
    let long = "a".repeat(5000);
    let hostile: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"text\"".to_vec(),
        b"{\"actor\": 5, \"list\": [], \"root\": {}, \"uri\": null}".to_vec(),
        format!("{{\"actor\": \"{long}\", \"uri\": \"at://{long}\"}}").into_bytes(),
        b"{\"seenAt\": \"yesterday\", \"subject\": \"did:\", \"preferences\": [1]}".to_vec(),
        vec![0xff, 0xfe, 0x00],
    ];
    for nsid in skyhose_api::PROCEDURES {
        let bearer = format!("Bearer {}", token(&plc, &w.a, nsid));
        for body in &hostile {
            let headers = [
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ];
            let res = common::http_request(
                server.addr,
                "POST",
                &format!("/xrpc/{nsid}"),
                &headers,
                Some(body),
            )
            .await;
            let text = String::from_utf8_lossy(body);
            // Every field of putPreferencesV2 is optional: an object of
            // other fields changes nothing.
            let all_optional = *nsid == "app.bsky.notification.putPreferencesV2"
                && serde_json::from_slice::<Value>(body).is_ok_and(|v| v.is_object());
            if all_optional {
                assert_eq!(res.status, 200, "{nsid} {text}");
                continue;
            }
            assert_eq!(
                res.status,
                400,
                "{nsid} {text}: {}",
                String::from_utf8_lossy(&res.body)
            );
            let answer: Value = serde_json::from_slice(&res.body).expect("error JSON");
            assert_eq!(answer["error"], "InvalidRequest", "{nsid} {text}: {answer}");
            assert!(answer["message"].is_string(), "{nsid}: {answer}");
        }
    }
}

/// A listing whose rules leave out rows it read fills a page less than
/// half full from the following rows, as the official AppView does: mutes
/// of accounts the index does not serve (gone since they were muted) are
/// left out of `getMutes`, and the page's cursor is that of the last rows
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_filled_past_the_rows_a_listing_leaves_out() {
    let (server, plc) = server_with_plc().await;
    let client = db().await;
    // A viewer of this test alone, and three accounts it mutes.
    let served: Vec<String> = client
        .query(
            "SELECT did FROM actors WHERE indexed AND status = 'active' \
             ORDER BY did DESC LIMIT 4",
            &[],
        )
        .await
        .expect("actors")
        .iter()
        .map(|row| row.get("did"))
        .collect();
    let (viewer, muted) = served.split_first().expect("four actors");
    // Newest first: gone, gone, muted[0], gone, muted[1], gone, gone, muted[2].
    let order = [None, None, Some(0usize), None, Some(1), None, None, Some(2)];
    for (age, which) in order.iter().enumerate() {
        let subject = match which {
            Some(i) => muted[*i].clone(),
            None => format!("did:plc:gone{age:020}"),
        };
        client
            .execute(
                "INSERT INTO private_actor_mutes (did, subject_did, created_at) \
                 VALUES ($1, $2, now() - make_interval(secs => $3))",
                &[viewer, &subject, &(age as f64)],
            )
            .await
            .expect("mute");
    }
    let me = As {
        server: &server,
        plc: &plc,
        did: viewer.clone(),
    };
    let dids = |body: &Value| -> Vec<String> {
        body["mutes"]
            .as_array()
            .expect("mutes")
            .iter()
            .filter_map(|p| p["did"].as_str().map(str::to_owned))
            .collect()
    };
    // Four asked: the first four rows show one account, less than half a
    // page, so the page reads the three rows still missing and shows the
    // second; the cursor follows the seventh row.
    let first = me.get("app.bsky.graph.getMutes", "limit=4").await;
    assert_eq!(dids(&first), muted[..2].to_vec(), "{first}");
    let cursor = first["cursor"].as_str().expect("a cursor").to_owned();
    let rest = me
        .get(
            "app.bsky.graph.getMutes",
            &format!("limit=4&cursor={}", enc(&cursor)),
        )
        .await;
    assert_eq!(dids(&rest), muted[2..].to_vec(), "{rest}");
    assert!(rest.get("cursor").is_none(), "{rest}");
    validate_with_official_lexicons(&[
        ("app.bsky.graph.getMutes".into(), "filled".into(), first),
        (
            "app.bsky.graph.getMutes".into(),
            "filled, last".into(),
            rest,
        ),
    ]);
}
