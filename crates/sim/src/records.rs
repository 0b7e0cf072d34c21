//! Builders for lexicon-shaped records (app.bsky.*), as DAG-CBOR values.
//! Field names and required fields follow the official lexicons exactly.

use crate::wire::{Cid, Value};

/// `com.atproto.repo.strongRef`.
#[derive(Debug, Clone, PartialEq)]
pub struct StrongRef {
    pub uri: String,
    pub cid: Cid,
}

impl StrongRef {
    pub fn to_value(&self) -> Value {
        Value::map([
            ("uri", Value::String(self.uri.clone())),
            ("cid", Value::String(self.cid.to_string())),
        ])
    }
}

fn typed<'a>(t: &str, fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::map(std::iter::once(("$type", Value::from(t))).chain(fields))
}

pub fn subject_ref(
    t: &str,
    subject: &StrongRef,
    via: Option<&StrongRef>,
    created_at: &str,
) -> Value {
    let mut fields = vec![
        ("subject", subject.to_value()),
        ("createdAt", Value::from(created_at)),
    ];
    if let Some(via) = via {
        fields.push(("via", via.to_value()));
    }
    typed(t, fields)
}

pub fn subject_did(t: &str, did: &str, created_at: &str) -> Value {
    typed(
        t,
        [
            ("subject", Value::from(did)),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn profile(display_name: &str, description: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.actor.profile",
        [
            ("displayName", Value::from(display_name)),
            ("description", Value::from(description)),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

/// A blob reference as stored in records (`$type: blob`, raw-codec CID).
pub fn blob(seed: u64, size: i64) -> Value {
    typed(
        "blob",
        [
            ("ref", Value::Link(Cid::for_raw(&seed.to_be_bytes()))),
            ("mimeType", Value::from("image/jpeg")),
            ("size", Value::Integer(size)),
        ],
    )
}

pub fn images_embed(images: Vec<(Value, &str)>) -> Value {
    let items = images
        .into_iter()
        .map(|(blob, alt)| {
            Value::map([
                ("image", blob),
                ("alt", Value::from(alt)),
                (
                    "aspectRatio",
                    Value::map([
                        ("width", Value::Integer(1200)),
                        ("height", Value::Integer(800)),
                    ]),
                ),
            ])
        })
        .collect();
    typed("app.bsky.embed.images", [("images", Value::List(items))])
}

pub fn external_embed(uri: &str, title: &str, description: &str) -> Value {
    typed(
        "app.bsky.embed.external",
        [(
            "external",
            Value::map([
                ("uri", Value::from(uri)),
                ("title", Value::from(title)),
                ("description", Value::from(description)),
            ]),
        )],
    )
}

pub fn record_embed(quoted: &StrongRef) -> Value {
    typed("app.bsky.embed.record", [("record", quoted.to_value())])
}

pub fn record_with_media_embed(quoted: &StrongRef, media: Value) -> Value {
    typed(
        "app.bsky.embed.recordWithMedia",
        [
            ("record", Value::map([("record", quoted.to_value())])),
            ("media", media),
        ],
    )
}

/// One richtext facet feature.
pub enum Feature {
    Mention(String),
    Link(String),
    Tag(String),
}

pub fn facet(byte_start: usize, byte_end: usize, feature: Feature) -> Value {
    let feature = match feature {
        Feature::Mention(did) => typed(
            "app.bsky.richtext.facet#mention",
            [("did", Value::from(did))],
        ),
        Feature::Link(uri) => typed("app.bsky.richtext.facet#link", [("uri", Value::from(uri))]),
        Feature::Tag(tag) => typed("app.bsky.richtext.facet#tag", [("tag", Value::from(tag))]),
    };
    Value::map([
        (
            "index",
            Value::map([
                ("byteStart", Value::Integer(byte_start as i64)),
                ("byteEnd", Value::Integer(byte_end as i64)),
            ]),
        ),
        ("features", Value::List(vec![feature])),
    ])
}

pub struct PostParts {
    pub text: String,
    pub facets: Vec<Value>,
    pub langs: Vec<&'static str>,
    pub reply: Option<(StrongRef, StrongRef)>,
    pub embed: Option<Value>,
}

pub fn post(parts: PostParts, created_at: &str) -> Value {
    let mut fields = vec![
        ("text", Value::String(parts.text)),
        ("createdAt", Value::from(created_at)),
    ];
    if !parts.facets.is_empty() {
        fields.push(("facets", Value::List(parts.facets)));
    }
    if !parts.langs.is_empty() {
        fields.push((
            "langs",
            Value::List(parts.langs.into_iter().map(Value::from).collect()),
        ));
    }
    if let Some((root, parent)) = parts.reply {
        fields.push((
            "reply",
            Value::map([("root", root.to_value()), ("parent", parent.to_value())]),
        ));
    }
    if let Some(embed) = parts.embed {
        fields.push(("embed", embed));
    }
    typed("app.bsky.feed.post", fields)
}

pub fn list(purpose: &str, name: &str, description: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.graph.list",
        [
            ("purpose", Value::from(purpose)),
            ("name", Value::from(name)),
            ("description", Value::from(description)),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn list_item(subject: &str, list_uri: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.graph.listitem",
        [
            ("subject", Value::from(subject)),
            ("list", Value::from(list_uri)),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn list_block(list_uri: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.graph.listblock",
        [
            ("subject", Value::from(list_uri)),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn generator(did: &str, display_name: &str, description: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.feed.generator",
        [
            ("did", Value::from(did)),
            ("displayName", Value::from(display_name)),
            ("description", Value::from(description)),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn starter_pack(name: &str, list_uri: &str, feeds: Vec<String>, created_at: &str) -> Value {
    let mut fields = vec![
        ("name", Value::from(name)),
        ("list", Value::from(list_uri)),
        ("createdAt", Value::from(created_at)),
    ];
    if !feeds.is_empty() {
        let feeds = feeds
            .into_iter()
            .map(|uri| Value::map([("uri", Value::String(uri))]))
            .collect();
        fields.push(("feeds", Value::List(feeds)));
    }
    typed("app.bsky.graph.starterpack", fields)
}

pub fn threadgate(post_uri: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.feed.threadgate",
        [
            ("post", Value::from(post_uri)),
            (
                "allow",
                Value::List(vec![typed("app.bsky.feed.threadgate#mentionRule", [])]),
            ),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn postgate(post_uri: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.feed.postgate",
        [
            ("post", Value::from(post_uri)),
            (
                "embeddingRules",
                Value::List(vec![typed("app.bsky.feed.postgate#disableRule", [])]),
            ),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn labeler_service(created_at: &str) -> Value {
    typed(
        "app.bsky.labeler.service",
        [
            (
                "policies",
                Value::map([(
                    "labelValues",
                    Value::List(vec![Value::from("spam"), Value::from("rude")]),
                )]),
            ),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn verification(subject: &str, handle: &str, display_name: &str, created_at: &str) -> Value {
    typed(
        "app.bsky.graph.verification",
        [
            ("subject", Value::from(subject)),
            ("handle", Value::from(handle)),
            ("displayName", Value::from(display_name)),
            ("createdAt", Value::from(created_at)),
        ],
    )
}

pub fn actor_status(duration_minutes: i64, created_at: &str) -> Value {
    typed(
        "app.bsky.actor.status",
        [
            ("status", Value::from("app.bsky.actor.status#live")),
            ("durationMinutes", Value::Integer(duration_minutes)),
            (
                "embed",
                external_embed("https://stream.sim.test/live", "Live now", "A live stream"),
            ),
            ("createdAt", Value::from(created_at)),
        ],
    )
}
