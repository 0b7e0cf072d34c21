//! Post and feed views as serializable structs that borrow each post's
//! record as stored. A feed page shows dozens of records; parsing each into a
//! JSON tree, copying it into its view and serializing the copy cost more than
//! everything else the API does for the page.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// `app.bsky.feed.defs#postView`: every field but the record as JSON values,
/// the record as its stored text.
#[derive(Debug, Serialize)]
pub struct PostView<'a> {
    #[serde(flatten)]
    pub fields: Map<String, Value>,
    pub record: &'a RawValue,
}

impl PostView<'_> {
    /// The view as a JSON tree, for responses that nest it in one (threads).
    pub fn into_value(self) -> Value {
        let mut fields = self.fields;
        fields.insert("record".into(), record_value(self.record));
        Value::Object(fields)
    }
}

/// A post's view, or the placeholder (`notFoundPost`, `blockedPost`) that
/// stands for it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PostOrPlaceholder<'a> {
    Post(PostView<'a>),
    Placeholder(Value),
}

/// `app.bsky.feed.defs#replyRef`.
#[derive(Debug, Serialize)]
pub struct ReplyRef<'a> {
    pub root: PostOrPlaceholder<'a>,
    pub parent: PostOrPlaceholder<'a>,
}

/// `app.bsky.feed.defs#feedViewPost`.
#[derive(Debug, Serialize)]
pub struct FeedViewPost<'a> {
    pub post: PostView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Value>,
}

/// The output of the feed methods: a page of feed items and the cursor of the
/// next page, if any.
#[derive(Debug, Serialize)]
pub struct FeedPage<'a> {
    pub feed: Vec<FeedViewPost<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A stored record as a JSON tree; `null` if the text is not JSON, which
/// PostgreSQL's `jsonb` output always is.
pub fn record_value(record: &RawValue) -> Value {
    serde_json::from_str(record.get()).unwrap_or(Value::Null)
}

/// The output of the methods that list posts (getPosts, searchPosts).
#[derive(Debug, Serialize)]
pub struct PostsPage<'a> {
    pub posts: Vec<PostView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
