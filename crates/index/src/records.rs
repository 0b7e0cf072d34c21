//! What the index derives from a record besides its JSON: the keys its live
//! state contributes to the aggregates and the notifications it causes.
//! References that counts or notifications depend on are validated here, so
//! a malformed record is rejected before it reaches a transaction.

use serde_json::Value;
use thiserror::Error;

use skyhose_proto::syntax::{is_did, parse_at_uri, uri_owner_did};

pub const POST: &str = "app.bsky.feed.post";
pub const LIKE: &str = "app.bsky.feed.like";
pub const REPOST: &str = "app.bsky.feed.repost";
pub const FOLLOW: &str = "app.bsky.graph.follow";
pub const BLOCK: &str = "app.bsky.graph.block";
pub const LIST_ITEM: &str = "app.bsky.graph.listitem";
pub const LIST_BLOCK: &str = "app.bsky.graph.listblock";
pub const STARTER_PACK: &str = "app.bsky.graph.starterpack";
pub const LIST: &str = "app.bsky.graph.list";
pub const FEED_GENERATOR: &str = "app.bsky.feed.generator";
pub const LABELER: &str = "app.bsky.labeler.service";
pub const THREADGATE: &str = "app.bsky.feed.threadgate";
pub const POSTGATE: &str = "app.bsky.feed.postgate";
pub const VERIFICATION: &str = "app.bsky.graph.verification";
pub const PROFILE: &str = "app.bsky.actor.profile";
pub const CHAT_DECLARATION: &str = "chat.bsky.actor.declaration";
/// The one record key of an actor's profile and chat declaration.
pub const SELF_RKEY: &str = "self";

const EMBED_RECORD: &str = "app.bsky.embed.record";
const EMBED_RECORD_WITH_MEDIA: &str = "app.bsky.embed.recordWithMedia";
const FACET_MENTION: &str = "app.bsky.richtext.facet#mention";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("record {collection}: {problem}")]
pub struct RecordError {
    pub collection: String,
    pub problem: String,
}

/// A notification a live record causes, before it is given ids and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationDraft {
    pub recipient: String,
    pub reason: &'static str,
    pub reason_subject: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFacts {
    /// Like/repost: the subject post URI. Follow: the followed DID. Post: the
    /// reply parent URI. Stored with the record so its contribution to the
    /// counts can be taken back when it dies.
    pub subject: Option<String>,
    /// Post: the URI of the quoted record.
    pub quote_subject: Option<String>,
    /// The notifications stored for the record. A like, repost or follow
    /// notifies its subject's owner through its own row, not through these;
    /// a reply notifies the authors of the posts above it through a
    /// statement that reads them from the index (`apply::write`).
    pub notifications: Vec<NotificationDraft>,
}

/// Validates `record` as an entry of `collection` written by `author` and
/// derives its facts.
pub fn derive(collection: &str, author: &str, record: &Value) -> Result<RecordFacts, RecordError> {
    let fail = |problem: String| RecordError {
        collection: collection.to_owned(),
        problem,
    };
    if !record.is_object() {
        return Err(fail("record is not a JSON object".into()));
    }
    // Records of collections the index does not know are kept as they are.
    let known = collection.starts_with("app.bsky.") || collection.starts_with("chat.bsky.");
    match record.get("$type").and_then(Value::as_str) {
        Some(kind) if kind == collection => {}
        Some(kind) if known => {
            return Err(fail(format!(
                "$type {kind:?} does not match the collection"
            )))
        }
        None if known => return Err(fail("record has no $type".into())),
        _ => {}
    }
    let mut facts = RecordFacts::default();
    match collection {
        POST => derive_post(record, &mut facts).map_err(fail)?,
        LIKE | REPOST => {
            let subject = strong_ref_uri(record, "subject").map_err(fail)?;
            let via = optional_strong_ref_uri(record, "via").map_err(fail)?;
            strong_ref_facts(collection, subject, via, &mut facts);
        }
        FOLLOW => {
            // The follow row itself notifies the followed account.
            let subject = did_field(record, "subject").map_err(fail)?;
            facts.subject = Some(subject);
        }
        BLOCK | VERIFICATION => {
            did_field(record, "subject").map_err(fail)?;
        }
        LIST_ITEM => {
            did_field(record, "subject").map_err(fail)?;
            uri_field(record, "list").map_err(fail)?;
        }
        LIST_BLOCK => {
            uri_field(record, "subject").map_err(fail)?;
        }
        STARTER_PACK => {
            uri_field(record, "list").map_err(fail)?;
        }
        THREADGATE | POSTGATE => {
            uri_field(record, "post").map_err(fail)?;
        }
        _ => {}
    }
    Ok(finish(facts, author))
}

/// The facts of a like or repost (`collection`) whose record holds exactly
/// `subject` and `via` (URIs) besides its `$type` and `createdAt`: what
/// [`derive`] gives for it, without the record's JSON tree.
pub fn derive_strong_ref(
    collection: &str,
    author: &str,
    subject: &str,
    via: Option<&str>,
) -> Result<RecordFacts, RecordError> {
    let fail = |problem: String| RecordError {
        collection: collection.to_owned(),
        problem,
    };
    let subject = valid_uri(subject, "uri").map_err(|e| fail(format!("subject.{e}")))?;
    let via = via
        .map(|via| valid_uri(via, "uri").map_err(|e| fail(format!("via.{e}"))))
        .transpose()?;
    let mut facts = RecordFacts::default();
    strong_ref_facts(collection, subject, via, &mut facts);
    Ok(finish(facts, author))
}

/// The facts of a follow whose record holds exactly `subject` besides its
/// `$type` and `createdAt`: what [`derive`] gives for it.
pub fn derive_follow(author: &str, subject: &str) -> Result<RecordFacts, RecordError> {
    let subject = valid_did(subject, "subject").map_err(|problem| RecordError {
        collection: FOLLOW.to_owned(),
        problem,
    })?;
    Ok(finish(
        RecordFacts {
            subject: Some(subject),
            ..RecordFacts::default()
        },
        author,
    ))
}

fn strong_ref_facts(
    collection: &str,
    subject: String,
    via: Option<String>,
    facts: &mut RecordFacts,
) {
    // The like or repost notifies its subject's owner through its own row
    // (migration 0013); only the reposter it came through is notified by a
    // row of `notifications`.
    let via_reason = if collection == LIKE {
        "like-via-repost"
    } else {
        "repost-via-repost"
    };
    if let Some(via) = via {
        push_owner(facts, &via, via_reason);
    }
    facts.subject = Some(subject);
}

fn finish(mut facts: RecordFacts, author: &str) -> RecordFacts {
    // Nobody is notified of their own actions, and, as the official
    // AppView does, an account once of a record: by the first reason found
    // (a post's mention before its quote, both before a reply).
    facts.notifications.retain(|n| n.recipient != author);
    let mut seen: Vec<String> = Vec::with_capacity(facts.notifications.len());
    facts.notifications.retain(|n| {
        if seen.contains(&n.recipient) {
            false
        } else {
            seen.push(n.recipient.clone());
            true
        }
    });
    facts
}

fn derive_post(record: &Value, facts: &mut RecordFacts) -> Result<(), String> {
    if let Some(reply) = record.get("reply") {
        // Both references are validated; who is notified of the reply
        // depends on the posts above it as indexed, not on the record alone.
        strong_ref_uri(reply, "root").map_err(|e| format!("reply: {e}"))?;
        let parent = strong_ref_uri(reply, "parent").map_err(|e| format!("reply: {e}"))?;
        facts.subject = Some(parent);
    }
    mentions(record, facts)?;
    if let Some(embed) = record.get("embed") {
        let quoted = match embed.get("$type").and_then(Value::as_str) {
            Some(EMBED_RECORD) => {
                Some(strong_ref_uri(embed, "record").map_err(|e| format!("embed: {e}"))?)
            }
            Some(EMBED_RECORD_WITH_MEDIA) => {
                let inner = embed
                    .get("record")
                    .ok_or_else(|| "embed: recordWithMedia has no record".to_owned())?;
                Some(strong_ref_uri(inner, "record").map_err(|e| format!("embed: {e}"))?)
            }
            _ => None,
        };
        if let Some(quoted) = quoted {
            push_owner(facts, &quoted, "quote");
            facts.quote_subject = Some(quoted);
        }
    }
    Ok(())
}

/// The accounts a post's mention facets name.
fn mentions(record: &Value, facts: &mut RecordFacts) -> Result<(), String> {
    if let Some(facets) = record.get("facets").and_then(Value::as_array) {
        for feature in facets
            .iter()
            .filter_map(|facet| facet.get("features").and_then(Value::as_array))
            .flatten()
        {
            if feature.get("$type").and_then(Value::as_str) == Some(FACET_MENTION) {
                let did = feature
                    .get("did")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "mention facet without a did".to_owned())?;
                if !is_did(did) {
                    return Err(format!("mention facet has an invalid did {did:?}"));
                }
                facts.notifications.push(NotificationDraft {
                    recipient: did.to_owned(),
                    reason: "mention",
                    reason_subject: None,
                });
            }
        }
    }
    Ok(())
}

fn push_owner(facts: &mut RecordFacts, uri: &str, reason: &'static str) {
    if let Some(owner) = uri_owner_did(uri) {
        facts.notifications.push(NotificationDraft {
            recipient: owner.to_owned(),
            reason,
            reason_subject: Some(uri.to_owned()),
        });
    }
}

/// The `uri` of the strong reference at `value[field]`.
fn strong_ref_uri(value: &Value, field: &str) -> Result<String, String> {
    let reference = value.get(field).ok_or_else(|| format!("missing {field}"))?;
    uri_field(reference, "uri").map_err(|e| format!("{field}.{e}"))
}

fn optional_strong_ref_uri(value: &Value, field: &str) -> Result<Option<String>, String> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => strong_ref_uri(value, field).map(Some),
    }
}

fn uri_field(value: &Value, field: &str) -> Result<String, String> {
    let uri = value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{field} is missing or not a string"))?;
    valid_uri(uri, field)
}

fn valid_uri(uri: &str, field: &str) -> Result<String, String> {
    if parse_at_uri(uri).is_none() {
        return Err(format!("{field} is not a valid AT-URI: {uri:?}"));
    }
    Ok(uri.to_owned())
}

fn did_field(value: &Value, field: &str) -> Result<String, String> {
    let did = value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{field} is missing or not a string"))?;
    valid_did(did, field)
}

fn valid_did(did: &str, field: &str) -> Result<String, String> {
    if !is_did(did) {
        return Err(format!("{field} is not a valid DID: {did:?}"));
    }
    Ok(did.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: &str = "did:plc:alice";
    const BOB: &str = "did:plc:bob";

    #[test]
    fn like_notifies_the_reposter_it_came_through() {
        let record = json!({"$type": LIKE, "createdAt": "2024-01-01T00:00:00Z",
            "subject": {"uri": "at://did:plc:bob/app.bsky.feed.post/1", "cid": "bafy"},
            "via": {"uri": "at://did:plc:carol/app.bsky.feed.repost/2", "cid": "bafy"}});
        let facts = derive(LIKE, ALICE, &record).expect("valid like");
        assert_eq!(
            facts.subject.as_deref(),
            Some("at://did:plc:bob/app.bsky.feed.post/1")
        );
        let reasons: Vec<_> = facts
            .notifications
            .iter()
            .map(|n| (n.recipient.as_str(), n.reason))
            .collect();
        // The subject's owner is notified by the like's own row.
        assert_eq!(reasons, vec![("did:plc:carol", "like-via-repost")]);
    }

    #[test]
    fn own_actions_do_not_notify() {
        let record = json!({"$type": LIKE, "createdAt": "x",
            "subject": {"uri": "at://did:plc:alice/app.bsky.feed.post/1", "cid": "bafy"},
            "via": {"uri": "at://did:plc:alice/app.bsky.feed.repost/2", "cid": "bafy"}});
        let facts = derive(LIKE, ALICE, &record).expect("valid like");
        assert!(facts.notifications.is_empty());
    }

    #[test]
    fn post_reply_quote_and_mention() {
        let record = json!({"$type": POST, "text": "hi", "createdAt": "x",
            "reply": {"root": {"uri": "at://did:plc:bob/app.bsky.feed.post/1", "cid": "a"},
                      "parent": {"uri": "at://did:plc:bob/app.bsky.feed.post/2", "cid": "b"}},
            "embed": {"$type": "app.bsky.embed.recordWithMedia",
                      "record": {"$type": "app.bsky.embed.record", "record": {"uri": "at://did:plc:carol/app.bsky.feed.post/3", "cid": "c"}},
                      "media": {"$type": "app.bsky.embed.images", "images": []}},
            "facets": [{"index": {"byteStart": 0, "byteEnd": 2},
                        "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:dave"}]}]});
        let facts = derive(POST, ALICE, &record).expect("valid post");
        assert_eq!(
            facts.subject.as_deref(),
            Some("at://did:plc:bob/app.bsky.feed.post/2")
        );
        assert_eq!(
            facts.quote_subject.as_deref(),
            Some("at://did:plc:carol/app.bsky.feed.post/3")
        );
        let reasons: Vec<_> = facts
            .notifications
            .iter()
            .map(|n| (n.recipient.as_str(), n.reason))
            .collect();
        // The reply's notifications come from the indexed posts above it.
        assert_eq!(
            reasons,
            vec![("did:plc:dave", "mention"), ("did:plc:carol", "quote")]
        );
    }

    #[test]
    fn an_account_is_notified_once_of_a_post() {
        let record = json!({"$type": POST, "text": "hi", "createdAt": "x",
            "embed": {"$type": "app.bsky.embed.record",
                      "record": {"uri": "at://did:plc:bob/app.bsky.feed.post/3", "cid": "c"}},
            "facets": [{"index": {"byteStart": 0, "byteEnd": 2},
                        "features": [{"$type": "app.bsky.richtext.facet#mention", "did": BOB}]}]});
        let facts = derive(POST, ALICE, &record).expect("valid post");
        let reasons: Vec<_> = facts
            .notifications
            .iter()
            .map(|n| (n.recipient.as_str(), n.reason))
            .collect();
        assert_eq!(reasons, vec![(BOB, "mention")]);
    }

    #[test]
    fn rejects_bad_references() {
        let bad_follow = json!({"$type": FOLLOW, "subject": "nobody", "createdAt": "x"});
        assert!(derive(FOLLOW, ALICE, &bad_follow).is_err());
        let bad_like = json!({"$type": LIKE, "subject": {"uri": "http://x", "cid": "a"}});
        assert!(derive(LIKE, ALICE, &bad_like).is_err());
        let wrong_type = json!({"$type": POST, "text": "x"});
        assert!(derive(LIKE, ALICE, &wrong_type).is_err());
    }
}
