//! The per-kind projection tables: which collection feeds which table and
//! how each column is read from the stored record JSON. Rows are written
//! with one set-based statement per kind, reading the `records` rows that
//! the same transaction just updated.

/// `r` is the `records` row, `j` its JSON.
pub struct KindTable {
    pub collection: &'static str,
    pub table: &'static str,
    /// `(column, SQL expression)`, after the common `uri, did, rkey, cid`.
    pub columns: &'static [(&'static str, &'static str)],
}

macro_rules! blob_cid {
    ($path:literal) => {
        concat!(
            "COALESCE(",
            $path,
            "->'ref'->>'$link', ",
            $path,
            "->>'cid')"
        )
    };
}

pub const KIND_TABLES: &[KindTable] = &[
    KindTable {
        collection: "app.bsky.feed.post",
        table: "posts",
        columns: &[
            ("text", "j->>'text'"),
            ("langs", "j->'langs'"),
            ("tags", "j->'tags'"),
            ("facets", "j->'facets'"),
            ("reply_root_uri", "j->'reply'->'root'->>'uri'"),
            ("reply_root_cid", "j->'reply'->'root'->>'cid'"),
            ("reply_parent_uri", "j->'reply'->'parent'->>'uri'"),
            ("reply_parent_cid", "j->'reply'->'parent'->>'cid'"),
            ("embed_type", "j->'embed'->>'$type'"),
            ("embed_images", "COALESCE(j->'embed'->'images', j->'embed'->'media'->'images')"),
            ("embed_external_uri", "COALESCE(j->'embed'->'external', j->'embed'->'media'->'external')->>'uri'"),
            ("embed_external_title", "COALESCE(j->'embed'->'external', j->'embed'->'media'->'external')->>'title'"),
            (
                "embed_external_description",
                "COALESCE(j->'embed'->'external', j->'embed'->'media'->'external')->>'description'",
            ),
            (
                "embed_external_thumb_cid",
                blob_cid!("COALESCE(j->'embed'->'external', j->'embed'->'media'->'external')->'thumb'"),
            ),
            (
                "embed_record_uri",
                "CASE j->'embed'->>'$type' WHEN 'app.bsky.embed.record' THEN j->'embed'->'record'->>'uri' \
                 WHEN 'app.bsky.embed.recordWithMedia' THEN j->'embed'->'record'->'record'->>'uri' END",
            ),
            (
                "embed_record_cid",
                "CASE j->'embed'->>'$type' WHEN 'app.bsky.embed.record' THEN j->'embed'->'record'->>'cid' \
                 WHEN 'app.bsky.embed.recordWithMedia' THEN j->'embed'->'record'->'record'->>'cid' END",
            ),
            ("embed_video_cid", blob_cid!("COALESCE(j->'embed'->'video', j->'embed'->'media'->'video')")),
            ("embed_video_alt", "COALESCE(j->'embed'->>'alt', j->'embed'->'media'->>'alt')"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.feed.like",
        table: "likes",
        columns: &[
            ("subject_uri", "j->'subject'->>'uri'"),
            ("subject_cid", "j->'subject'->>'cid'"),
            ("via_uri", "j->'via'->>'uri'"),
            ("via_cid", "j->'via'->>'cid'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.feed.repost",
        table: "reposts",
        columns: &[
            ("subject_uri", "j->'subject'->>'uri'"),
            ("subject_cid", "j->'subject'->>'cid'"),
            ("via_uri", "j->'via'->>'uri'"),
            ("via_cid", "j->'via'->>'cid'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.graph.follow",
        table: "follows",
        columns: &[("subject_did", "j->>'subject'"), ("created_at", "j->>'createdAt'")],
    },
    KindTable {
        collection: "app.bsky.graph.block",
        table: "blocks",
        columns: &[("subject_did", "j->>'subject'"), ("created_at", "j->>'createdAt'")],
    },
    KindTable {
        collection: "app.bsky.graph.list",
        table: "lists",
        columns: &[
            ("name", "j->>'name'"),
            ("purpose", "j->>'purpose'"),
            ("description", "j->>'description'"),
            ("avatar_cid", blob_cid!("j->'avatar'")),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.graph.listitem",
        table: "list_items",
        columns: &[
            ("list_uri", "j->>'list'"),
            ("subject_did", "j->>'subject'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.graph.listblock",
        table: "list_blocks",
        columns: &[("list_uri", "j->>'subject'"), ("created_at", "j->>'createdAt'")],
    },
    KindTable {
        collection: "app.bsky.actor.profile",
        table: "profiles",
        columns: &[
            ("display_name", "j->>'displayName'"),
            ("description", "j->>'description'"),
            ("avatar_cid", blob_cid!("j->'avatar'")),
            ("banner_cid", blob_cid!("j->'banner'")),
            ("pinned_post_uri", "j->'pinnedPost'->>'uri'"),
            ("pinned_post_cid", "j->'pinnedPost'->>'cid'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.feed.generator",
        table: "feed_generators",
        columns: &[
            ("service_did", "j->>'did'"),
            ("display_name", "j->>'displayName'"),
            ("description", "j->>'description'"),
            ("avatar_cid", blob_cid!("j->'avatar'")),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.graph.starterpack",
        table: "starter_packs",
        columns: &[
            ("name", "j->>'name'"),
            ("description", "j->>'description'"),
            ("list_uri", "j->>'list'"),
            ("feeds", "j->'feeds'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.feed.threadgate",
        table: "threadgates",
        columns: &[
            ("post_uri", "j->>'post'"),
            ("allow", "j->'allow'"),
            ("hidden_replies", "j->'hiddenReplies'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.feed.postgate",
        table: "postgates",
        columns: &[
            ("post_uri", "j->>'post'"),
            ("detached_embedding_uris", "j->'detachedEmbeddingUris'"),
            ("embedding_rules", "j->'embeddingRules'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.labeler.service",
        table: "labeler_services",
        columns: &[("policies", "j->'policies'"), ("created_at", "j->>'createdAt'")],
    },
    KindTable {
        collection: "app.bsky.graph.verification",
        table: "verifications",
        columns: &[
            ("subject_did", "j->>'subject'"),
            ("handle", "j->>'handle'"),
            ("display_name", "j->>'displayName'"),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.actor.status",
        table: "actor_statuses",
        columns: &[
            ("status", "j->>'status'"),
            ("embed", "j->'embed'"),
            (
                "duration_minutes",
                "CASE WHEN j->>'durationMinutes' ~ '^[0-9]{1,15}$' THEN (j->>'durationMinutes')::bigint END",
            ),
            ("created_at", "j->>'createdAt'"),
        ],
    },
    KindTable {
        collection: "app.bsky.notification.declaration",
        table: "notification_declarations",
        columns: &[("allow_subscriptions", "j->>'allowSubscriptions'")],
    },
    KindTable {
        collection: "chat.bsky.actor.declaration",
        table: "chat_declarations",
        columns: &[("allow_incoming", "j->>'allowIncoming'")],
    },
];

pub fn kind_table(collection: &str) -> Option<&'static KindTable> {
    KIND_TABLES
        .iter()
        .find(|kind| kind.collection == collection)
}

impl KindTable {
    /// Upserts the rows for the `records` uris in `$1` (all of this kind and live).
    pub fn upsert_sql(&self) -> String {
        let mut names = vec!["uri", "did", "rkey", "cid"];
        let mut exprs = vec!["r.uri", "r.did", "r.rkey", "r.cid"];
        for (name, expr) in self.columns {
            names.push(name);
            exprs.push(expr);
        }
        let updates: Vec<String> = names
            .iter()
            .skip(1)
            .map(|name| format!("{name} = excluded.{name}"))
            .chain(std::iter::once("indexed_at = now()".to_owned()))
            .collect();
        format!(
            "INSERT INTO {table} ({names}) \
             SELECT {exprs} FROM records r, LATERAL (SELECT r.record AS j) AS rec \
             WHERE r.uri = ANY($1) ORDER BY r.uri \
             ON CONFLICT (uri) DO UPDATE SET {updates}",
            table = self.table,
            names = names.join(", "),
            exprs = exprs.join(", "),
            updates = updates.join(", "),
        )
    }

    pub fn delete_sql(&self) -> String {
        format!("DELETE FROM {} WHERE uri = ANY($1)", self.table)
    }
}
