//! app.bsky.unspecced.getPostThreadV2 and getPostThreadOtherV2: the thread
//! screen's flat list of items with depths. The thread is loaded as
//! `getPostThread` loads it ([`load_thread`]); this module only shapes it:
//! parents above the anchor (negative depths), replies below it sorted and
//! trimmed per level, and the replies the screen folds away ("other":
//! hidden by the root's threadgate, by the viewer muting their author, or a
//! lone 📌) answered separately.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::error::XrpcResult;
use crate::routes::feed::{load_thread, LoadedThread};
use crate::routes::{json, Ctx};
use crate::views::post::PostInfo;
use crate::views::{uri_did, Hydrated};

/// Parents shown above the anchor when `above` is true (the official
/// AppView's default limit).
const MAX_PARENTS: i64 = 50;

const SORTS: &[&str] = &["newest", "oldest", "top"];

/// The self-label by which an account asks not to be shown to logged-out
/// viewers.
const NO_UNAUTHENTICATED: &str = "!no-unauthenticated";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Newest,
    Oldest,
    Top,
}

pub async fn get_post_thread_v2(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let anchor = ctx.params.at_uri("anchor")?;
    let above = ctx.params.bool("above", true)?;
    let below = ctx.params.int("below", 0, 20, 6)?;
    let branching = ctx.params.int("branchingFactor", 0, 100, 10)? as usize;
    let sort = match ctx.params.known_value("sort", SORTS, "oldest") {
        "newest" => Sort::Newest,
        "top" => Sort::Top,
        _ => Sort::Oldest,
    };
    let client = ctx.db().await?;
    let above = if above { MAX_PARENTS } else { 0 };
    let known_likers = match ctx.viewer() {
        Some(viewer) => crate::views::post::load_known_likers(&client, viewer, &anchor).await?,
        None => None,
    };
    let likers: Vec<String> = known_likers
        .iter()
        .flat_map(|k| k.actors.iter().cloned())
        .collect();
    let Some(loaded) = load_thread(ctx, &client, &anchor, above, below, &likers).await? else {
        return json(&json!({"thread": [not_found(&anchor, 0)], "hasOtherReplies": false}));
    };
    let h = &loaded.hydrated;
    let Some(post) = h.post(&anchor) else {
        return json(&json!({"thread": [not_found(&anchor, 0)], "hasOtherReplies": false}));
    };
    if h.blocked(&post.did) {
        let item = blocked(h, &anchor, 0, &post.did);
        return json(&json!({"thread": [item], "hasOtherReplies": false}));
    }
    let shape = Shape::new(&loaded, post, branching, sort);

    // A reply its thread's gate disallows is shown alone: without the
    // thread it was not let into, and without replies.
    let gated_out = post.violates_threadgate;
    let parents = if gated_out {
        Vec::new()
    } else {
        shape.parents(&anchor, above)
    };
    // The anchor continues an OP thread when every shown parent does and
    // the anchor is the OP's too.
    let anchor_op = match parents.last() {
        Some(top) => top.op_thread && post.did == shape.op_did,
        None => post.did == shape.op_did,
    };
    let mut thread: Vec<Value> = parents.into_iter().rev().map(|p| p.item).collect();
    let mut has_other_replies = false;
    if shape.no_unauthenticated(&post.did) {
        thread.push(item(&anchor, 0, json!({"$type": NO_UNAUTH_TYPE})));
    } else {
        let mut replies = if gated_out {
            Vec::new()
        } else {
            shape.replies(&anchor, 1, below, anchor_op, &mut has_other_replies)
        };
        shape.sort_trim(&mut replies, 0);
        let mut view = h.post_view(&anchor).unwrap_or(Value::Null);
        if let (Some(known), Some(Value::Object(viewer))) = (&known_likers, view.get_mut("viewer"))
        {
            // The count is every known liker; the sample leaves out who the
            // viewer blocks and accounts not served.
            let actors: Vec<&serde_json::value::RawValue> = known
                .actors
                .iter()
                .filter(|did| !h.blocked(did))
                .filter_map(|did| h.profile_basic_raw(did))
                .collect();
            viewer.insert(
                "knownLikers".into(),
                json!({ "count": known.count, "actors": actors }),
            );
        }
        thread.push(post_item(&anchor, 0, view, anchor_op, false, 0));
        flatten(replies, &mut thread);
    }
    let mut out = json!({"thread": thread, "hasOtherReplies": has_other_replies});
    if let Some(tg) = loaded.threadgate_view(&shape.root_uri) {
        out["threadgate"] = tg;
    }
    json(&out)
}

pub async fn get_post_thread_other_v2(ctx: &Ctx<'_>) -> XrpcResult<Response> {
    let anchor = ctx.params.at_uri("anchor")?;
    let client = ctx.db().await?;
    let Some(loaded) = load_thread(ctx, &client, &anchor, 0, 1, &[]).await? else {
        return json(&json!({"thread": []}));
    };
    let h = &loaded.hydrated;
    let Some(post) = h.post(&anchor).filter(|p| !h.blocked(&p.did)) else {
        return json(&json!({"thread": []}));
    };
    let shape = Shape::new(&loaded, post, 0, Sort::Newest);
    let mut others: Vec<Node> = loaded
        .children
        .get(&anchor)
        .into_iter()
        .flatten()
        .filter_map(|uri| {
            let p = shape.shown_reply(uri)?;
            let hidden = shape.hidden_by_threadgate(uri, p);
            let muted = h.muted(&p.did);
            if !hidden && !muted && !shape.is_pushpin(p) {
                return None;
            }
            let mut node = shape.node(uri, p, 1, false, 0, Vec::new());
            if let Some(Value::Object(value)) = node.item.get_mut("value") {
                value.insert("hiddenByThreadgate".into(), json!(hidden));
                value.insert("mutedByViewer".into(), json!(muted));
            }
            node.hidden_by_threadgate = Some(hidden);
            Some(node)
        })
        .collect();
    shape.sort_trim(&mut others, 0);
    let mut thread = Vec::new();
    flatten(others, &mut thread);
    json(&json!({ "thread": thread }))
}

const POST_TYPE: &str = "app.bsky.unspecced.defs#threadItemPost";
const NO_UNAUTH_TYPE: &str = "app.bsky.unspecced.defs#threadItemNoUnauthenticated";

fn item(uri: &str, depth: i64, value: Value) -> Value {
    json!({"uri": uri, "depth": depth, "value": value})
}

fn not_found(uri: &str, depth: i64) -> Value {
    item(
        uri,
        depth,
        json!({"$type": "app.bsky.unspecced.defs#threadItemNotFound"}),
    )
}

fn blocked(h: &Hydrated<'_>, uri: &str, depth: i64, did: &str) -> Value {
    item(
        uri,
        depth,
        json!({"$type": "app.bsky.unspecced.defs#threadItemBlocked", "author": h.blocked_author(did)}),
    )
}

/// `threadItemPost` of the main thread: replies hidden by the threadgate
/// or by the viewer's mutes are `getPostThreadOtherV2`'s, which sets those
/// flags.
fn post_item(
    uri: &str,
    depth: i64,
    view: Value,
    op_thread: bool,
    more_parents: bool,
    more_replies: i64,
) -> Value {
    let mut value = Map::new();
    value.insert("$type".into(), json!(POST_TYPE));
    value.insert("post".into(), view);
    value.insert("moreParents".into(), json!(more_parents));
    value.insert("moreReplies".into(), json!(more_replies));
    value.insert("opThread".into(), json!(op_thread));
    value.insert("hiddenByThreadgate".into(), json!(false));
    value.insert("mutedByViewer".into(), json!(false));
    item(uri, depth, Value::Object(value))
}

/// A parent above the anchor: its item and whether the OP thread runs
/// through it from the topmost parent shown.
struct Parent {
    item: Value,
    op_thread: bool,
}

/// A reply with what its siblings are ordered by.
struct Node {
    item: Value,
    depth: i64,
    author: String,
    indexed_at: String,
    likes: i64,
    followed: bool,
    /// Set on the "other" replies only.
    hidden_by_threadgate: Option<bool>,
    replies: Vec<Node>,
}

struct Shape<'a, 'h> {
    h: &'a Hydrated<'h>,
    loaded: &'a LoadedThread<'h>,
    root_uri: String,
    op_did: String,
    hidden: std::collections::HashSet<String>,
    branching: usize,
    sort: Sort,
}

impl<'a, 'h> Shape<'a, 'h> {
    fn new(loaded: &'a LoadedThread<'h>, anchor: &PostInfo, branching: usize, sort: Sort) -> Self {
        let root_uri = anchor
            .reply_root_uri
            .clone()
            .unwrap_or_else(|| anchor.uri.clone());
        let op_did = uri_did(&root_uri).unwrap_or_default().to_owned();
        Shape {
            h: &loaded.hydrated,
            hidden: loaded.hidden_replies(&root_uri),
            loaded,
            root_uri,
            op_did,
            branching,
            sort,
        }
    }

    fn no_unauthenticated(&self, did: &str) -> bool {
        self.h.viewer.is_none()
            && self
                .h
                .actor(did)
                .is_some_and(|a| a.labels.iter().any(|l| l.val == NO_UNAUTHENTICATED))
    }

    /// The parents of `anchor`, nearest first, as far as `above` levels.
    fn parents(&self, anchor: &str, above: i64) -> Vec<Parent> {
        let loaded: HashMap<&str, &Option<String>> = self
            .loaded
            .ancestors
            .iter()
            .map(|(uri, parent)| (uri.as_str(), parent))
            .collect();
        // Nearest first: (uri, depth, post) or a placeholder that ends the walk.
        let mut chain: Vec<(String, i64, Option<&PostInfo>, Option<Value>)> = Vec::new();
        let mut child = anchor.to_owned();
        let mut depth: i64 = -1;
        while depth.abs() <= above {
            let Some(Some(uri)) = loaded.get(child.as_str()).map(|p| (*p).clone()) else {
                break;
            };
            let Some(p) = self
                .h
                .post(&uri)
                .filter(|_| loaded.contains_key(uri.as_str()))
            else {
                chain.push((uri.clone(), depth, None, Some(not_found(&uri, depth))));
                break;
            };
            if !p.in_thread(&self.root_uri) {
                break;
            }
            if self.h.blocked(&p.did) {
                let item = blocked(self.h, &uri, depth, &p.did);
                chain.push((uri.clone(), depth, None, Some(item)));
                break;
            }
            chain.push((uri.clone(), depth, Some(p), None));
            child = uri;
            depth -= 1;
        }
        // OP-thread flags run from the top down.
        let mut op_flags = vec![false; chain.len()];
        let mut above_op: Option<bool> = None;
        for (i, (_, _, post, _)) in chain.iter().enumerate().rev() {
            let op = match post {
                Some(p) => above_op.unwrap_or(true) && p.did == self.op_did,
                None => false,
            };
            if let Some(flag) = op_flags.get_mut(i) {
                *flag = op;
            }
            above_op = Some(op);
        }
        let count = chain.len();
        chain
            .into_iter()
            .zip(op_flags)
            .enumerate()
            .map(|(i, ((uri, depth, post, placeholder), op_thread))| {
                let item = match (post, placeholder) {
                    (_, Some(item)) => item,
                    (Some(p), None) if self.no_unauthenticated(&p.did) => {
                        item(&uri, depth, json!({"$type": NO_UNAUTH_TYPE}))
                    }
                    (Some(p), None) => {
                        // The walk stopped above this parent although it
                        // has one of its own.
                        let more_parents = i + 1 == count && p.reply_parent_uri.is_some();
                        let view = self.h.post_view(&uri).unwrap_or(Value::Null);
                        post_item(&uri, depth, view, op_thread, more_parents, 0)
                    }
                    (None, None) => not_found(&uri, depth),
                };
                Parent { item, op_thread }
            })
            .collect()
    }

    /// A reply that may be shown at all: served, of this thread, not
    /// blocked either way, and visible to a logged-out viewer if that is
    /// who asks.
    fn shown_reply(&self, uri: &str) -> Option<&'a PostInfo> {
        let p = self.h.post(uri)?;
        if p.violates_threadgate
            || !p.in_thread(&self.root_uri)
            || self.h.blocked(&p.did)
            || self.no_unauthenticated(&p.did)
        {
            return None;
        }
        Some(p)
    }

    /// Hidden by the root author's threadgate, except from its own author.
    fn hidden_by_threadgate(&self, uri: &str, p: &PostInfo) -> bool {
        self.h.viewer != Some(p.did.as_str()) && self.hidden.contains(uri)
    }

    /// A reply that is only a 📌 (people bookmarking a thread that way) is
    /// folded away as the official app expects.
    fn is_pushpin(&self, p: &PostInfo) -> bool {
        if !p.record.get().contains('📌') {
            return false;
        }
        serde_json::from_str::<Value>(p.record.get())
            .ok()
            .and_then(|r| {
                r.get("text")
                    .and_then(Value::as_str)
                    .map(|t| t.trim() == "📌")
            })
            .unwrap_or(false)
    }

    fn node(
        &self,
        uri: &str,
        p: &PostInfo,
        depth: i64,
        op_thread: bool,
        more_replies: i64,
        replies: Vec<Node>,
    ) -> Node {
        let view = self.h.post_view(uri).unwrap_or(Value::Null);
        Node {
            item: post_item(uri, depth, view, op_thread, false, more_replies),
            depth,
            author: p.did.clone(),
            indexed_at: p.indexed_at.clone(),
            likes: p.likes,
            followed: self
                .h
                .actor_viewer
                .get(&p.did)
                .is_some_and(|v| v.following.is_some()),
            hidden_by_threadgate: None,
            replies,
        }
    }

    /// The shown replies of `parent` at `depth`, down to `below`; sets
    /// `has_other` when a direct reply of the anchor was folded away.
    fn replies(
        &self,
        parent: &str,
        depth: i64,
        below: i64,
        op_thread: bool,
        has_other: &mut bool,
    ) -> Vec<Node> {
        if depth > below {
            return Vec::new();
        }
        let Some(children) = self.loaded.children.get(parent) else {
            return Vec::new();
        };
        let mut nodes = Vec::with_capacity(children.len());
        for uri in children {
            let Some(p) = self.shown_reply(uri) else {
                continue;
            };
            if self.hidden_by_threadgate(uri, p) || self.h.muted(&p.did) || self.is_pushpin(p) {
                if depth == 1 {
                    *has_other = true;
                }
                continue;
            }
            let op = op_thread && p.did == self.op_did;
            let nested = self.replies(uri, depth + 1, below, op, &mut false);
            let allowance = if depth == below {
                0
            } else {
                self.branching as i64
            };
            let more = (p.replies - allowance).max(0);
            nodes.push(self.node(uri, p, depth, op, more, nested));
        }
        nodes
    }

    /// Orders each level's replies (the OP's first, then the viewer's, then
    /// those of accounts the viewer follows; the folded-away ones hidden by
    /// the threadgate last; then by `sort`) and keeps `branching` of them
    /// below the anchor's own level.
    fn sort_trim(&self, nodes: &mut Vec<Node>, parent_depth: i64) {
        nodes.sort_by(|a, b| self.compare(a, b));
        if parent_depth != 0 {
            nodes.truncate(self.branching);
        }
        for node in nodes.iter_mut() {
            let depth = node.depth;
            self.sort_trim(&mut node.replies, depth);
        }
    }

    fn compare(&self, a: &Node, b: &Node) -> Ordering {
        // Both or neither: the next rule decides; one: it goes `up` (first)
        // or down.
        let bump = |up: bool, predicate: &dyn Fn(&Node) -> bool| match (predicate(a), predicate(b))
        {
            (true, true) => Some(self.by_sort(a, b)),
            (true, false) if up => Some(Ordering::Less),
            (true, false) => Some(Ordering::Greater),
            (false, true) if up => Some(Ordering::Greater),
            (false, true) => Some(Ordering::Less),
            (false, false) => None,
        };
        let viewer = self.h.viewer;
        bump(true, &|n| n.author == self.op_did)
            .or_else(|| bump(true, &|n| Some(n.author.as_str()) == viewer))
            .or_else(|| bump(true, &|n| n.hidden_by_threadgate.is_none() && n.followed))
            .or_else(|| bump(false, &|n| n.hidden_by_threadgate == Some(true)))
            .unwrap_or_else(|| self.by_sort(a, b))
    }

    fn by_sort(&self, a: &Node, b: &Node) -> Ordering {
        let shown = a.hidden_by_threadgate.is_none() && b.hidden_by_threadgate.is_none();
        if shown {
            match self.sort {
                Sort::Oldest => return a.indexed_at.cmp(&b.indexed_at),
                Sort::Top => {
                    let (ta, tb) = (top_value(a.likes), top_value(b.likes));
                    if ta != tb {
                        return tb.total_cmp(&ta);
                    }
                }
                Sort::Newest => {}
            }
        }
        b.indexed_at.cmp(&a.indexed_at)
    }
}

/// Likes count logarithmically, so a reply with a few likes is not buried
/// under one with many.
fn top_value(likes: i64) -> f64 {
    (3.0 + likes.max(0) as f64).ln()
}

fn flatten(nodes: Vec<Node>, out: &mut Vec<Value>) {
    for node in nodes {
        out.push(node.item);
        flatten(node.replies, out);
    }
}
