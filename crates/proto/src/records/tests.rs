use super::*;
use serde_json::json;

const CID: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

#[test]
fn post_with_reply_facets_and_media_embed() {
    let raw = json!({
        "$type": "app.bsky.feed.post",
        "text": "hello @alice.test",
        "createdAt": "2024-01-01T00:00:00.000Z",
        "langs": ["en"],
        "futureField": 1,
        "reply": {
            "root": {"uri": "at://did:plc:a/app.bsky.feed.post/3k", "cid": CID},
            "parent": {"uri": "at://did:plc:a/app.bsky.feed.post/3l", "cid": CID}
        },
        "facets": [{
            "index": {"byteStart": 6, "byteEnd": 17},
            "features": [
                {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:alice"},
                {"$type": "app.bsky.richtext.facet#future", "x": 1}
            ]
        }],
        "embed": {
            "$type": "app.bsky.embed.recordWithMedia",
            "record": {"record": {"uri": "at://did:plc:b/app.bsky.feed.post/3m", "cid": CID}},
            "media": {"$type": "app.bsky.embed.images", "images": [{
                "alt": "",
                "image": {"$type": "blob", "ref": {"$link": CID}, "mimeType": "image/jpeg", "size": 10}
            }]}
        }
    });
    let Record::Post(post) = Record::from_json("app.bsky.feed.post", &raw).unwrap() else {
        panic!("not a post");
    };
    assert_eq!(post.reply.as_ref().unwrap().parent.cid, CID);
    let facet = &post.facets.as_ref().unwrap()[0];
    assert!(matches!(&facet.features[0], FacetFeature::Mention(m) if m.did == "did:plc:alice"));
    assert!(matches!(&facet.features[1], FacetFeature::Unknown(_)));
    let Some(Embed::RecordWithMedia(embed)) = &post.embed else {
        panic!("embed not typed");
    };
    let Media::Images(images) = &embed.media else {
        panic!("media not typed");
    };
    assert_eq!(images.images[0].image.cid(), Some(CID));

    // Serialising keeps `$type` on union members, so the record reads back equal.
    let back = serde_json::to_value(&post).unwrap();
    assert_eq!(back["embed"]["$type"], "app.bsky.embed.recordWithMedia");
    assert_eq!(
        Record::from_json("app.bsky.feed.post", &back).unwrap(),
        Record::Post(post)
    );
}

#[test]
fn graph_and_actor_records() {
    let follow = json!({"subject": "did:plc:b", "createdAt": "2024-01-01T00:00:00Z"});
    assert!(matches!(
        Record::from_json("app.bsky.graph.follow", &follow).unwrap(),
        Record::Follow(f) if f.subject == "did:plc:b"
    ));
    let gate = json!({"post": "at://x/app.bsky.feed.post/1", "createdAt": "2024-01-01T00:00:00Z",
        "allow": [{"$type": "app.bsky.feed.threadgate#listRule", "list": "at://l"},
                  {"$type": "app.bsky.feed.threadgate#followerRule"}]});
    let Record::Threadgate(gate) = Record::from_json("app.bsky.feed.threadgate", &gate).unwrap()
    else {
        panic!("not a threadgate");
    };
    assert!(matches!(
        &gate.allow.unwrap()[1],
        ThreadgateRule::Follower(_)
    ));
    let legacy_avatar = json!({"avatar": {"cid": CID, "mimeType": "image/png"}});
    let Record::Profile(profile) =
        Record::from_json("app.bsky.actor.profile", &legacy_avatar).unwrap()
    else {
        panic!("not a profile");
    };
    assert_eq!(profile.avatar.unwrap().cid(), Some(CID));
}

#[test]
fn malformed_known_record_names_collection_and_field() {
    let err = Record::from_json("app.bsky.feed.like", &json!({"createdAt": "x"})).unwrap_err();
    assert_eq!(err.collection, "app.bsky.feed.like");
    assert!(err.reason.contains("subject"), "{err}");
}

#[test]
fn other_collections_stay_raw() {
    let raw = json!({"anything": [1, 2]});
    assert_eq!(
        Record::from_json("com.example.thing", &raw).unwrap(),
        Record::Unknown(raw)
    );
}
