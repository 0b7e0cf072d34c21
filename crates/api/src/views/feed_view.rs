//! Post and feed views as serializable structs that borrow each post's
//! record as stored. A feed page shows dozens of records; parsing each into a
//! JSON tree, copying it into its view and serializing the copy cost more than
//! everything else the API does for the page.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::views::labels::Label;

/// `app.bsky.feed.defs#postView`, borrowing from the hydrated rows. The
/// fields are declared in the order of their keys' bytes, which is the order
/// in which every other view (a map) writes its keys; the record comes last,
/// written as stored.
#[derive(Debug, Serialize)]
pub struct PostView<'a> {
    #[serde(rename = "$type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<&'static str>,
    /// The author's `profileViewBasic`, rendered once per response.
    pub author: &'a RawValue,
    /// Bookmarks are private state (see `views::private`), counted over
    /// every account.
    #[serde(rename = "bookmarkCount")]
    pub bookmark_count: i64,
    pub cid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embed: Option<Value>,
    #[serde(rename = "indexedAt")]
    pub indexed_at: &'a str,
    pub labels: &'a [Label],
    #[serde(rename = "likeCount")]
    pub like_count: i64,
    #[serde(rename = "quoteCount")]
    pub quote_count: i64,
    #[serde(rename = "replyCount")]
    pub reply_count: i64,
    #[serde(rename = "repostCount")]
    pub repost_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threadgate: Option<Value>,
    pub uri: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewer: Option<PostViewerState<'a>>,
    pub record: &'a RawValue,
}

/// `app.bsky.feed.defs#viewerState`, keys in byte order.
#[derive(Debug, Serialize)]
pub struct PostViewerState<'a> {
    /// Whether the viewer bookmarked the post: private state, see
    /// `views::private`.
    pub bookmarked: bool,
    #[serde(rename = "embeddingDisabled")]
    pub embedding_disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub like: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repost: Option<&'a str>,
    /// Set when the thread has a gate: whether it keeps the viewer out.
    #[serde(rename = "replyDisabled", skip_serializing_if = "Option::is_none")]
    pub reply_disabled: Option<bool>,
    #[serde(rename = "threadMuted")]
    pub thread_muted: bool,
}

impl PostView<'_> {
    /// The view as a JSON tree, for responses that nest it in one (threads).
    pub fn into_value(self) -> Value {
        serde_json::to_value(&self).unwrap_or(Value::Null)
    }
}

/// A post's view, or the placeholder (`notFoundPost`, `blockedPost`) that
/// stands for it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PostOrPlaceholder<'a> {
    Post(Box<PostView<'a>>),
    Placeholder(Value),
}

/// `app.bsky.feed.defs#replyRef`.
#[derive(Debug, Serialize)]
pub struct ReplyRef<'a> {
    pub root: PostOrPlaceholder<'a>,
    pub parent: PostOrPlaceholder<'a>,
    /// The author of the post the parent replies to, when the parent is shown.
    #[serde(rename = "grandparentAuthor", skip_serializing_if = "Option::is_none")]
    pub grandparent_author: Option<&'a RawValue>,
}

/// `app.bsky.feed.defs#feedViewPost`.
#[derive(Debug, Serialize)]
pub struct FeedViewPost<'a> {
    pub post: PostView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonView<'a>>,
}

/// `app.bsky.feed.defs#reasonRepost` and `#reasonPin`, keys in byte order.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ReasonView<'a> {
    Repost {
        #[serde(rename = "$type")]
        type_: &'static str,
        by: &'a RawValue,
        cid: &'a str,
        #[serde(rename = "indexedAt")]
        indexed_at: &'a str,
        uri: &'a str,
    },
    Pin {
        #[serde(rename = "$type")]
        type_: &'static str,
    },
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
