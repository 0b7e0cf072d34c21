//! The per-collection projection tables: which collection feeds which table
//! and how each column is read from the record. Column values are extracted
//! here, when an entry is parsed, so the batch transaction inserts ready rows
//! instead of reading the JSON back out of `records`.

use serde_json::Value;

use crate::compact::{Compact, FOLLOW, STRONG_REFS};

/// How a column's text value is cast in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Text,
    Jsonb,
    Int8,
}

impl SqlType {
    fn cast(self) -> &'static str {
        match self {
            SqlType::Text => "",
            SqlType::Jsonb => "::jsonb",
            SqlType::Int8 => "::int8",
        }
    }
}

pub struct Column {
    pub name: &'static str,
    pub ty: SqlType,
    /// The value as text (JSON text for `Jsonb`), `None` for SQL NULL.
    pub extract: fn(&Value) -> Option<String>,
}

pub struct KindTable {
    pub collection: &'static str,
    pub table: &'static str,
    /// After the common `uri, did, rkey, cid`.
    pub columns: &'static [Column],
    /// Set when the table keeps its collection's record state itself
    /// (migration 0010) instead of `records`.
    pub own_state: Option<OwnState>,
}

/// A table that holds its records' state: `rev`, `seq`, `live` and the
/// record JSON beside the projected columns, with a row for every record
/// ever seen, tombstones included. Its rows are the ones a batch locks;
/// readers see the live ones through a view under the collection's old
/// table name (`posts` for `post_rows`, ...).
pub struct OwnState {
    /// The column holding what `RecordFacts::subject` holds for this
    /// collection, and the one for `quote_subject`.
    pub subject: &'static str,
    pub quote_subject: Option<&'static str>,
    /// The column marking a reply that its thread's gate disallows
    /// (migration 0022): its subject does not count it.
    pub gate_flag: Option<&'static str>,
    /// How the table's views rebuild a record stored as NULL (migration
    /// 0014), when they do.
    pub rebuilt: Option<RebuiltRecord>,
    /// Set when the table keeps its rows compact (likes and reposts,
    /// migration 0021; follows, migration 0023), written by (actor id,
    /// record key) instead of by uri.
    pub compact: Option<Compact>,
}

/// The pieces whose concatenation is the record text a view rebuilds
/// from a row's projected columns (in `columns` order); `None` when the
/// columns cannot say it. It must render exactly what the view's SQL
/// function does.
pub type RebuiltRecord =
    for<'a> fn(&'a str, &'a [Option<String>]) -> Option<[&'a str; REBUILT_PIECES]>;

pub const REBUILT_PIECES: usize = 15;

/// `rebuilt_strong_ref_record` of migration 0014, over the like and
/// repost columns `subject_uri, subject_cid, via_uri, via_cid, created_at`.
fn rebuilt_strong_ref_record<'a>(
    collection: &'a str,
    columns: &'a [Option<String>],
) -> Option<[&'a str; REBUILT_PIECES]> {
    let [Some(subject_uri), Some(subject_cid), via_uri, via_cid, Some(created_at)] = columns else {
        return None;
    };
    let [via_open, via_cid, via_between, via_uri, via_close] = match (via_uri, via_cid) {
        (Some(uri), Some(cid)) => [",\"via\":{\"cid\":\"", cid, "\",\"uri\":\"", uri, "\"}"],
        (None, None) => [""; 5],
        _ => return None,
    };
    Some([
        "{\"$type\":\"",
        collection,
        "\",\"createdAt\":\"",
        created_at,
        "\",\"subject\":{\"cid\":\"",
        subject_cid,
        "\",\"uri\":\"",
        subject_uri,
        "\"}",
        via_open,
        via_cid,
        via_between,
        via_uri,
        via_close,
        "}",
    ])
}

/// `rebuilt_follow_record` of migration 0014, over the follow columns
/// `subject_did, created_at`.
fn rebuilt_follow_record<'a>(
    collection: &'a str,
    columns: &'a [Option<String>],
) -> Option<[&'a str; REBUILT_PIECES]> {
    let [Some(subject_did), Some(created_at)] = columns else {
        return None;
    };
    let mut pieces = [""; REBUILT_PIECES];
    pieces[..7].copy_from_slice(&[
        "{\"$type\":\"",
        collection,
        "\",\"createdAt\":\"",
        created_at,
        "\",\"subject\":\"",
        subject_did,
        "\"}",
    ]);
    Some(pieces)
}

/// True when `text` is the record `kind`'s views rebuild from `columns`,
/// so its row may store it as NULL.
pub fn is_rebuilt(kind: &KindTable, columns: &[Option<String>], text: &str) -> bool {
    let Some(state) = kind.own_state.as_ref() else {
        return false;
    };
    let Some(rebuilt) = state.rebuilt else {
        return false;
    };
    // A compact row rebuilds the text from its compact columns, so each
    // of them must have one.
    if let Some(compact) = &state.compact {
        if !compact.layout.rebuildable(columns) {
            return false;
        }
    }
    let Some(pieces) = rebuilt(kind.collection, columns) else {
        return false;
    };
    let mut rest = text;
    for piece in pieces {
        match rest.strip_prefix(piece) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// `record.a.b...` (each step only into objects), as with `->` in SQL: JSON
/// null counts as present.
fn at<'a>(record: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(record, |value, key| value.get(*key))
}

/// A value as SQL's `->>` renders it: strings unquoted, JSON null as NULL,
/// anything else as its JSON text.
fn as_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn text(record: &Value, path: &[&str]) -> Option<String> {
    as_text(at(record, path))
}

fn json(record: &Value, path: &[&str]) -> Option<String> {
    at(record, path).map(Value::to_string)
}

/// The first of `paths` that is present (SQL `COALESCE` over `->`).
fn first<'a>(record: &'a Value, paths: &[&[&str]]) -> Option<&'a Value> {
    paths.iter().find_map(|path| at(record, path))
}

/// A blob reference's CID: `{"ref": {"$link": …}}`, or the legacy `{"cid": …}`.
fn blob_cid(blob: Option<&Value>) -> Option<String> {
    let blob = blob?;
    text(blob, &["ref", "$link"]).or_else(|| text(blob, &["cid"]))
}

const EMBED_EXTERNAL: &[&[&str]] = &[&["embed", "external"], &["embed", "media", "external"]];

/// The quoted record's strong reference of a post's embed.
fn embed_record(record: &Value) -> Option<&Value> {
    match text(record, &["embed", "$type"]).as_deref() {
        Some("app.bsky.embed.record") => at(record, &["embed", "record"]),
        Some("app.bsky.embed.recordWithMedia") => at(record, &["embed", "record", "record"]),
        _ => None,
    }
}

fn created_at(record: &Value) -> Option<String> {
    text(record, &["createdAt"])
}

macro_rules! col {
    ($name:literal, $ty:ident, $extract:expr) => {
        Column {
            name: $name,
            ty: SqlType::$ty,
            extract: $extract,
        }
    };
}

const CREATED_AT: Column = col!("created_at", Text, created_at);

pub const KIND_TABLES: &[KindTable] = &[
    KindTable {
        collection: "app.bsky.feed.post",
        table: "post_rows",
        // The text is read from the record (migration 0029).
        columns: &[
            col!("reply_root_uri", Text, |j| text(
                j,
                &["reply", "root", "uri"]
            )),
            col!("reply_parent_uri", Text, |j| text(
                j,
                &["reply", "parent", "uri"]
            )),
            col!("embed_type", Text, |j| text(j, &["embed", "$type"])),
            col!("embed_external_uri", Text, |j| {
                as_text(first(j, EMBED_EXTERNAL).and_then(|e| e.get("uri")))
            }),
            col!("embed_record_uri", Text, |j| {
                as_text(embed_record(j).and_then(|r| r.get("uri")))
            }),
            CREATED_AT,
        ],
        own_state: Some(OwnState {
            subject: "reply_parent_uri",
            quote_subject: Some("embed_record_uri"),
            gate_flag: Some("violates_threadgate"),
            rebuilt: None,
            compact: None,
        }),
    },
    KindTable {
        collection: "app.bsky.feed.like",
        table: "like_rows",
        columns: &[
            col!("subject_uri", Text, |j| text(j, &["subject", "uri"])),
            col!("subject_cid", Text, |j| text(j, &["subject", "cid"])),
            col!("via_uri", Text, |j| text(j, &["via", "uri"])),
            col!("via_cid", Text, |j| text(j, &["via", "cid"])),
            CREATED_AT,
        ],
        own_state: Some(OwnState {
            subject: "subject_uri",
            quote_subject: None,
            gate_flag: None,
            rebuilt: Some(rebuilt_strong_ref_record),
            compact: Some(Compact {
                layout: &STRONG_REFS,
                state_view: "like_state",
            }),
        }),
    },
    KindTable {
        collection: "app.bsky.feed.repost",
        table: "repost_rows",
        columns: &[
            col!("subject_uri", Text, |j| text(j, &["subject", "uri"])),
            col!("subject_cid", Text, |j| text(j, &["subject", "cid"])),
            col!("via_uri", Text, |j| text(j, &["via", "uri"])),
            col!("via_cid", Text, |j| text(j, &["via", "cid"])),
            CREATED_AT,
        ],
        own_state: Some(OwnState {
            subject: "subject_uri",
            quote_subject: None,
            gate_flag: None,
            rebuilt: Some(rebuilt_strong_ref_record),
            compact: Some(Compact {
                layout: &STRONG_REFS,
                state_view: "repost_state",
            }),
        }),
    },
    KindTable {
        collection: "app.bsky.graph.follow",
        table: "follow_rows",
        columns: &[
            col!("subject_did", Text, |j| text(j, &["subject"])),
            CREATED_AT,
        ],
        own_state: Some(OwnState {
            subject: "subject_did",
            quote_subject: None,
            gate_flag: None,
            rebuilt: Some(rebuilt_follow_record),
            compact: Some(Compact {
                layout: &FOLLOW,
                state_view: "follow_state",
            }),
        }),
    },
    KindTable {
        collection: "app.bsky.graph.block",
        table: "blocks",
        columns: &[
            col!("subject_did", Text, |j| text(j, &["subject"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.graph.list",
        table: "lists",
        columns: &[
            col!("name", Text, |j| text(j, &["name"])),
            col!("purpose", Text, |j| text(j, &["purpose"])),
            col!("description", Text, |j| text(j, &["description"])),
            col!("avatar_cid", Text, |j| blob_cid(j.get("avatar"))),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.graph.listitem",
        table: "list_items",
        columns: &[
            col!("list_uri", Text, |j| text(j, &["list"])),
            col!("subject_did", Text, |j| text(j, &["subject"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.graph.listblock",
        table: "list_blocks",
        columns: &[
            col!("list_uri", Text, |j| text(j, &["subject"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.actor.profile",
        table: "profiles",
        columns: &[
            col!("display_name", Text, |j| text(j, &["displayName"])),
            col!("description", Text, |j| text(j, &["description"])),
            col!("avatar_cid", Text, |j| blob_cid(j.get("avatar"))),
            col!("banner_cid", Text, |j| blob_cid(j.get("banner"))),
            col!("pinned_post_uri", Text, |j| text(j, &["pinnedPost", "uri"])),
            col!("pinned_post_cid", Text, |j| text(j, &["pinnedPost", "cid"])),
            col!("joined_via_starter_pack_uri", Text, |j| {
                text(j, &["joinedViaStarterPack", "uri"])
            }),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.feed.generator",
        table: "feed_generators",
        columns: &[
            col!("service_did", Text, |j| text(j, &["did"])),
            col!("display_name", Text, |j| text(j, &["displayName"])),
            col!("description", Text, |j| text(j, &["description"])),
            col!("avatar_cid", Text, |j| blob_cid(j.get("avatar"))),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.graph.starterpack",
        table: "starter_packs",
        columns: &[
            col!("name", Text, |j| text(j, &["name"])),
            col!("description", Text, |j| text(j, &["description"])),
            col!("list_uri", Text, |j| text(j, &["list"])),
            col!("feeds", Jsonb, |j| json(j, &["feeds"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.feed.threadgate",
        table: "threadgates",
        columns: &[
            col!("post_uri", Text, |j| text(j, &["post"])),
            col!("allow", Jsonb, |j| json(j, &["allow"])),
            col!("hidden_replies", Jsonb, |j| json(j, &["hiddenReplies"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.feed.postgate",
        table: "postgates",
        columns: &[
            col!("post_uri", Text, |j| text(j, &["post"])),
            col!("detached_embedding_uris", Jsonb, |j| {
                json(j, &["detachedEmbeddingUris"])
            }),
            col!("embedding_rules", Jsonb, |j| json(j, &["embeddingRules"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.labeler.service",
        table: "labeler_services",
        columns: &[
            col!("policies", Jsonb, |j| json(j, &["policies"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.graph.verification",
        table: "verifications",
        columns: &[
            col!("subject_did", Text, |j| text(j, &["subject"])),
            col!("handle", Text, |j| text(j, &["handle"])),
            col!("display_name", Text, |j| text(j, &["displayName"])),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.actor.status",
        table: "actor_statuses",
        columns: &[
            col!("status", Text, |j| text(j, &["status"])),
            col!("embed", Jsonb, |j| json(j, &["embed"])),
            col!("duration_minutes", Int8, duration_minutes),
            CREATED_AT,
        ],
        own_state: None,
    },
    KindTable {
        collection: "app.bsky.notification.declaration",
        table: "notification_declarations",
        columns: &[col!("allow_subscriptions", Text, |j| {
            text(j, &["allowSubscriptions"])
        })],
        own_state: None,
    },
    KindTable {
        collection: "chat.bsky.actor.declaration",
        table: "chat_declarations",
        columns: &[col!("allow_incoming", Text, |j| text(
            j,
            &["allowIncoming"]
        ))],
        own_state: None,
    },
];

/// Whole minutes written as 1 to 15 digits; anything else (negative,
/// fractional, too large for a bigint) is not stored.
fn duration_minutes(record: &Value) -> Option<String> {
    text(record, &["durationMinutes"]).filter(|digits| {
        (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

pub fn kind_table(collection: &str) -> Option<&'static KindTable> {
    KIND_TABLES
        .iter()
        .find(|kind| kind.collection == collection)
}

impl KindTable {
    /// The column values of `record` for this table, in `columns` order.
    pub fn extract(&self, record: &Value) -> Vec<Option<String>> {
        self.columns
            .iter()
            .map(|column| (column.extract)(record))
            .collect()
    }

    /// Inserts the rows `rows` (an `Unnest` clause of `uri, did, rkey,
    /// cid`, then the text array of each entry of `columns` named by
    /// [`projected_name`]). Only rows whose record just became live are
    /// inserted, so there is no conflict to handle: a live record's row was
    /// deleted first when it changed.
    pub fn insert_sql(&self, rows: &str) -> String {
        let mut names = vec!["uri", "did", "rkey", "cid"];
        let mut exprs: Vec<String> = names.iter().map(|name| format!("v.{name}")).collect();
        for (index, column) in self.columns.iter().enumerate() {
            names.push(column.name);
            exprs.push(format!("v.{}{}", projected_name(index), column.ty.cast()));
        }
        format!(
            "INSERT INTO {table} ({names}) SELECT {exprs} FROM {rows}",
            table = self.table,
            names = names.join(", "),
            exprs = exprs.join(", "),
        )
    }

    pub fn delete_sql(&self) -> String {
        format!("DELETE FROM {} WHERE uri = ANY($1)", self.table)
    }

    /// The projected columns' names and their values as `v.cN` with
    /// their casts.
    fn projected(&self) -> (Vec<&'static str>, Vec<String>) {
        let names = self.columns.iter().map(|c| c.name).collect();
        let exprs = self
            .columns
            .iter()
            .enumerate()
            .map(|(index, column)| format!("v.{}{}", projected_name(index), column.ty.cast()))
            .collect();
        (names, exprs)
    }

    /// For an [`OwnState`] table: inserts the rows of records it has never
    /// seen with their final state and locks the rows that exist, in uri
    /// order, returning the uris inserted. `rows` (an `Unnest` clause) has
    /// `uri, did, rkey, cid, rev, seq, live, record`, then the projected
    /// columns.
    pub fn lock_sql(&self, rows: &str) -> String {
        let (projected, projected_exprs) = self.projected();
        let mut names = vec!["uri", "did", "rkey", "cid", "rev", "seq", "live", "record"];
        let mut exprs: Vec<String> = names.iter().map(|name| format!("v.{name}")).collect();
        if let Some(record) = exprs.last_mut() {
            record.push_str("::json");
        }
        names.extend(projected);
        exprs.extend(projected_exprs);
        names.extend(["actor", "rkey_id"]);
        exprs.extend(["v.actor".to_owned(), "v.rkey_id".to_owned()]);
        format!(
            "INSERT INTO {table} AS t ({names}) \
             SELECT {exprs} \
             FROM {rows} \
             ORDER BY v.uri \
             ON CONFLICT (uri) DO UPDATE SET live = t.live WHERE false \
             RETURNING uri",
            table = self.table,
            names = names.join(", "),
            exprs = exprs.join(", "),
        )
    }

    /// For an [`OwnState`] table (`state` is its `own_state`): the state of
    /// the rows `$1`, as `uri, did, live, rev, seq, subject, quote_subject,
    /// violates_threadgate`.
    pub fn stored_sql(&self, state: &OwnState) -> String {
        format!(
            "SELECT uri, did, live, rev, seq, {subject} AS subject, {quote}::text AS quote_subject, \
             {flag} AS violates_threadgate FROM {table} WHERE uri = ANY($1)",
            subject = state.subject,
            quote = state.quote_subject.unwrap_or("NULL"),
            flag = state.gate_flag.unwrap_or("false"),
            table = self.table,
        )
    }

    /// For an [`OwnState`] table: gives existing rows new live content.
    /// `rows` (an `Unnest` clause) has `uri, cid, rev, seq, record`, then
    /// the projected columns.
    pub fn revive_sql(&self, rows: &str) -> String {
        let (names, exprs) = self.projected();
        let set: Vec<String> = names
            .iter()
            .zip(&exprs)
            .map(|(name, expr)| format!("{name} = {expr}"))
            .collect();
        format!(
            "UPDATE {table} AS t SET cid = v.cid, rev = v.rev, seq = v.seq, live = true, \
             record = v.record::json, {set}, indexed_at = now() \
             FROM {rows} \
             WHERE t.uri = v.uri",
            table = self.table,
            set = set.join(", "),
        )
    }

    /// For an [`OwnState`] table: turns existing rows into tombstones with
    /// the `rev, seq` of `rows` (an `Unnest` clause of `uri, rev, seq`). The
    /// projected columns are left as they were, so that no index changes
    /// and the new row version can stay on its page.
    pub fn tombstone_sql(&self, rows: &str) -> String {
        format!(
            "UPDATE {table} AS t SET rev = v.rev, seq = v.seq, live = false, cid = NULL, record = NULL \
             FROM {rows} \
             WHERE t.uri = v.uri",
            table = self.table,
        )
    }
}

/// The name of the projected column at `index` among a statement's
/// columns: projected columns are numbered rather than named, so that none
/// can clash with the state columns beside them.
pub fn projected_name(index: usize) -> String {
    format!("c{index}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::unnest::Unnest;
    use serde_json::json;

    /// Only a record that is exactly the rebuilt text may be stored as NULL.
    #[test]
    fn records_are_left_out_only_when_the_columns_rebuild_them_exactly() {
        let like = kind_table("app.bsky.feed.like").expect("like table");
        let follow = kind_table("app.bsky.graph.follow").expect("follow table");
        let rebuilt = |kind: &KindTable, text: &str| {
            let record: Value = serde_json::from_str(text).expect("JSON");
            is_rebuilt(kind, &kind.extract(&record), text)
        };
        // Likes keep compact CIDs (migration 0021), so these are real ones.
        let cid = skyhose_proto::Cid::for_dag_cbor(b"x").to_string();
        let subject =
            format!(r#""subject":{{"cid":"{cid}","uri":"at://did:plc:b/app.bsky.feed.post/3l"}}"#);
        let via =
            format!(r#""via":{{"cid":"{cid}","uri":"at://did:plc:c/app.bsky.feed.repost/3k"}}"#);
        let created = r#""createdAt":"2024-11-01T00:00:00.000Z""#;
        let kind = r#""$type":"app.bsky.feed.like""#;
        assert!(rebuilt(like, &format!("{{{kind},{created},{subject}}}")));
        assert!(rebuilt(
            like,
            &format!("{{{kind},{created},{subject},{via}}}")
        ));
        for kept in [
            format!("{{{kind},{subject},{created}}}"),
            format!("{{{kind}, {created},{subject}}}"),
            format!("{{{kind},{created},{subject},\"x\":1}}"),
            format!("{{{kind},{subject}}}"),
            format!("{{{kind},\"createdAt\":\"a\\\"b\",{subject}}}"),
            // a time the row cannot store (migration 0027) is read from the text
            format!("{{{kind},\"createdAt\":\"2024-11-01T00:00:00Z\",{subject}}}"),
            format!(
                r#"{{{kind},{created},{subject},"via":{{"uri":"at://did:plc:c/app.bsky.feed.repost/3k"}}}}"#
            ),
            format!(r#"{{"$type":"app.bsky.feed.repost",{created},{subject}}}"#),
            // a CID without a compact form is read from the text
            format!(
                r#"{{{kind},{created},"subject":{{"cid":"bafyp","uri":"at://did:plc:b/app.bsky.feed.post/3l"}}}}"#
            ),
        ] {
            assert!(!rebuilt(like, &kept), "{kept}");
        }
        assert!(rebuilt(
            follow,
            r#"{"$type":"app.bsky.graph.follow","createdAt":"2024-11-01T00:00:00.000Z","subject":"did:plc:b"}"#
        ));
        assert!(!rebuilt(
            follow,
            r#"{"$type":"app.bsky.graph.follow","createdAt":"2024-11-01T00:00:00.000Z","subject":"did:plc:b","x":null}"#
        ));
        let post = kind_table("app.bsky.feed.post").expect("post table");
        assert!(!rebuilt(
            post,
            r#"{"$type":"app.bsky.feed.post","text":"hi"}"#
        ));
    }

    fn column(kind: &KindTable, name: &str, record: &Value) -> Option<String> {
        let index = kind
            .columns
            .iter()
            .position(|c| c.name == name)
            .expect("column exists");
        kind.extract(record).swap_remove(index)
    }

    #[test]
    fn post_columns_follow_the_embed_kind() {
        let posts = kind_table("app.bsky.feed.post").expect("posts");
        let quote = json!({"$type": "app.bsky.feed.post", "text": "hi", "langs": ["en"],
            "embed": {"$type": "app.bsky.embed.recordWithMedia",
                "record": {"record": {"uri": "at://did:plc:b/app.bsky.feed.post/1", "cid": "bafyq"}},
                "media": {"$type": "app.bsky.embed.external",
                    "external": {"uri": "https://x", "title": "t", "description": "d",
                        "thumb": {"$type": "blob", "ref": {"$link": "bafythumb"}}}}}});
        assert_eq!(
            column(posts, "embed_record_uri", &quote).as_deref(),
            Some("at://did:plc:b/app.bsky.feed.post/1")
        );
        assert_eq!(
            column(posts, "embed_external_uri", &quote).as_deref(),
            Some("https://x")
        );
        assert_eq!(column(posts, "reply_root_uri", &quote), None);
        let video = json!({"embed": {"$type": "app.bsky.embed.video", "alt": "a",
            "video": {"cid": "bafylegacy"}}});
        assert_eq!(
            column(posts, "embed_type", &video).as_deref(),
            Some("app.bsky.embed.video")
        );
        assert_eq!(column(posts, "embed_record_uri", &video), None);
    }

    #[test]
    fn values_render_as_sql_would() {
        let status = kind_table("app.bsky.actor.status").expect("statuses");
        for (minutes, expected) in [
            (json!(30), Some("30")),
            (json!("45"), Some("45")),
            (json!(-1), None),
            (json!(1.5), None),
            (json!(1_000_000_000_000_000u64), None),
        ] {
            let record = json!({"status": "live", "durationMinutes": minutes});
            assert_eq!(
                column(status, "duration_minutes", &record).as_deref(),
                expected,
                "{minutes}"
            );
        }
        let posts = kind_table("app.bsky.feed.post").expect("posts");
        // JSON null is SQL NULL for text, the JSON value null for jsonb.
        assert_eq!(
            column(posts, "embed_type", &json!({"embed": {"$type": null}})),
            None
        );
        let record = json!({"status": "live", "embed": null});
        assert_eq!(column(status, "embed", &record).as_deref(), Some("null"));
        assert_eq!(column(status, "embed", &json!({"status": "live"})), None);
    }

    /// The `unnest` clause of a statement with `fixed` columns, then the
    /// projected columns of `kind`, all text for the test's purpose.
    fn rows(kind: &KindTable, fixed: &[&'static str]) -> String {
        let mut rows = Unnest::new();
        for name in fixed {
            rows.column(*name, Vec::<&str>::new());
        }
        for index in 0..kind.columns.len() {
            rows.column(projected_name(index), Vec::<&str>::new());
        }
        rows.rows()
    }

    #[test]
    fn insert_statement_casts_each_column() {
        let blocks = kind_table("app.bsky.graph.block").expect("blocks");
        assert_eq!(
            blocks.insert_sql(&rows(blocks, &["uri", "did", "rkey", "cid"])),
            "INSERT INTO blocks (uri, did, rkey, cid, subject_did, created_at) \
             SELECT v.uri, v.did, v.rkey, v.cid, v.c0, v.c1 \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             AS v(uri, did, rkey, cid, c0, c1)"
        );
        let statuses = kind_table("app.bsky.actor.status").expect("statuses");
        assert!(statuses
            .insert_sql(&rows(statuses, &["uri", "did", "rkey", "cid"]))
            .contains("v.c1::jsonb, v.c2::int8"));
    }

    #[test]
    fn own_state_statements_take_the_state_then_the_projected_columns() {
        let posts = kind_table("app.bsky.feed.post").expect("posts");
        let lock = posts.lock_sql("unnest($1::text[]) AS v(uri)");
        assert!(lock.starts_with(
            "INSERT INTO post_rows AS t (uri, did, rkey, cid, rev, seq, live, record, \
             reply_root_uri, reply_parent_uri, "
        ));
        assert!(lock.contains(
            "SELECT v.uri, v.did, v.rkey, v.cid, v.rev, v.seq, v.live, v.record::json, v.c0, \
             v.c1, "
        ));
        assert!(lock.contains("FROM unnest($1::text[]) AS v(uri) ORDER BY v.uri"));
        assert!(lock
            .ends_with("ON CONFLICT (uri) DO UPDATE SET live = t.live WHERE false RETURNING uri"));
        let revive = posts.revive_sql("unnest($1::text[]) AS v(uri)");
        assert!(revive.contains("reply_root_uri = v.c0, reply_parent_uri = v.c1"));
        assert!(revive.contains("FROM unnest($1::text[]) AS v(uri) WHERE t.uri = v.uri"));
        let state = posts
            .own_state
            .as_ref()
            .expect("posts keep their own state");
        assert_eq!(
            posts.stored_sql(state),
            "SELECT uri, did, live, rev, seq, reply_parent_uri AS subject, \
             embed_record_uri::text AS quote_subject, violates_threadgate AS violates_threadgate \
             FROM post_rows WHERE uri = ANY($1)"
        );
        assert!(kind_table("app.bsky.graph.block")
            .expect("blocks")
            .own_state
            .is_none());
    }
}
