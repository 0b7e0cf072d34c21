//! Media embeds (images, external links, video) rendered from a record's
//! `embed` field. They need no queries: URLs are built from blob CIDs.
//! Record embeds need hydrated posts and live in `hydrate`.

use serde_json::{json, Map, Value};

use crate::config::ApiConfig;

pub const IMAGES: &str = "app.bsky.embed.images";
pub const EXTERNAL: &str = "app.bsky.embed.external";
pub const RECORD: &str = "app.bsky.embed.record";
pub const RECORD_WITH_MEDIA: &str = "app.bsky.embed.recordWithMedia";
pub const VIDEO: &str = "app.bsky.embed.video";

/// The CID of a blob reference, in its current or legacy shape.
pub fn blob_cid(blob: &Value) -> Option<&str> {
    blob.get("ref")
        .and_then(|r| r.get("$link"))
        .or_else(|| blob.get("cid"))
        .and_then(Value::as_str)
}

pub fn embed_type(embed: &Value) -> Option<&str> {
    embed.get("$type").and_then(Value::as_str)
}

/// The view of a media embed, or None when it is not media or is malformed.
pub fn media_view(config: &ApiConfig, did: &str, embed: &Value) -> Option<Value> {
    match embed_type(embed)? {
        IMAGES => images_view(config, did, embed),
        EXTERNAL => external_view(config, did, embed),
        VIDEO => video_view(config, did, embed),
        _ => None,
    }
}

fn images_view(config: &ApiConfig, did: &str, embed: &Value) -> Option<Value> {
    let images = embed.get("images")?.as_array()?;
    let views: Vec<Value> = images
        .iter()
        .filter_map(|image| {
            let cid = blob_cid(image.get("image")?)?;
            let mut m = Map::new();
            m.insert(
                "thumb".into(),
                json!(config.image_url("feed_thumbnail", did, cid)),
            );
            m.insert(
                "fullsize".into(),
                json!(config.image_url("feed_fullsize", did, cid)),
            );
            m.insert(
                "alt".into(),
                json!(image.get("alt").and_then(Value::as_str).unwrap_or("")),
            );
            if let Some(ratio) = aspect_ratio(image) {
                m.insert("aspectRatio".into(), ratio);
            }
            Some(Value::Object(m))
        })
        .collect();
    Some(json!({"$type": "app.bsky.embed.images#view", "images": views}))
}

fn external_view(config: &ApiConfig, did: &str, embed: &Value) -> Option<Value> {
    let external = embed.get("external")?;
    let uri = external.get("uri")?.as_str()?;
    let mut m = Map::new();
    m.insert("uri".into(), json!(uri));
    m.insert(
        "title".into(),
        json!(external.get("title").and_then(Value::as_str).unwrap_or("")),
    );
    m.insert(
        "description".into(),
        json!(external
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")),
    );
    if let Some(cid) = external.get("thumb").and_then(blob_cid) {
        m.insert(
            "thumb".into(),
            json!(config.image_url("feed_thumbnail", did, cid)),
        );
    }
    Some(json!({"$type": "app.bsky.embed.external#view", "external": Value::Object(m)}))
}

fn video_view(config: &ApiConfig, did: &str, embed: &Value) -> Option<Value> {
    let cid = blob_cid(embed.get("video")?)?;
    let mut m = Map::new();
    m.insert("$type".into(), json!("app.bsky.embed.video#view"));
    m.insert("cid".into(), json!(cid));
    m.insert(
        "playlist".into(),
        json!(config.video_playlist_url(did, cid)),
    );
    m.insert(
        "thumbnail".into(),
        json!(config.video_thumbnail_url(did, cid)),
    );
    if let Some(alt) = embed.get("alt").and_then(Value::as_str) {
        m.insert("alt".into(), json!(alt));
    }
    if let Some(ratio) = aspect_ratio(embed) {
        m.insert("aspectRatio".into(), ratio);
    }
    Some(Value::Object(m))
}

/// Copied only when both sides are positive integers, as the lexicon requires.
fn aspect_ratio(value: &Value) -> Option<Value> {
    let ratio = value.get("aspectRatio")?;
    let width = ratio.get("width")?.as_i64().filter(|w| *w > 0)?;
    let height = ratio.get("height")?.as_i64().filter(|h| *h > 0)?;
    Some(json!({"width": width, "height": height}))
}
