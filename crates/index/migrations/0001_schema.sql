-- The indexed state of the network. `records` is the authority for every
-- record (live or tombstoned); the per-kind tables are projections of the
-- live rows of `records`, kept in the same transaction.

CREATE TABLE actors (
    did          text PRIMARY KEY,
    handle       text,
    handle_seq   bigint,
    status       text NOT NULL DEFAULT 'active',
    status_seq   bigint,
    deleted_seq  bigint,
    last_rev     text,
    last_seq     bigint,
    first_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actors_handle_idx ON actors (handle);

CREATE TABLE records (
    uri            text PRIMARY KEY,
    did            text NOT NULL,
    collection     text NOT NULL,
    rkey           text NOT NULL,
    cid            text,
    rev            text,
    seq            bigint,
    live           boolean NOT NULL DEFAULT false,
    subject        text,
    quote_subject  text,
    record         jsonb,
    indexed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX records_did_collection_idx ON records (did, collection, rkey) WHERE live;

CREATE TABLE post_counts (
    uri      text PRIMARY KEY,
    likes    bigint NOT NULL DEFAULT 0,
    reposts  bigint NOT NULL DEFAULT 0,
    replies  bigint NOT NULL DEFAULT 0,
    quotes   bigint NOT NULL DEFAULT 0
);

CREATE TABLE actor_counts (
    did        text PRIMARY KEY,
    followers  bigint NOT NULL DEFAULT 0,
    follows    bigint NOT NULL DEFAULT 0,
    posts      bigint NOT NULL DEFAULT 0
);

CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    recipient_did   text NOT NULL,
    author_did      text NOT NULL,
    reason          text NOT NULL,
    reason_subject  text,
    record_uri      text NOT NULL,
    record_cid      text NOT NULL,
    created_at      text,
    indexed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_recipient_idx ON notifications (recipient_did, id DESC);
CREATE INDEX notifications_record_idx ON notifications (record_uri);

CREATE TABLE index_watermark (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL
);

CREATE TABLE posts (
    uri                         text PRIMARY KEY,
    did                         text NOT NULL,
    rkey                        text NOT NULL,
    cid                         text NOT NULL,
    text                        text,
    langs                       jsonb,
    tags                        jsonb,
    facets                      jsonb,
    reply_root_uri              text,
    reply_root_cid              text,
    reply_parent_uri            text,
    reply_parent_cid            text,
    embed_type                  text,
    embed_images                jsonb,
    embed_external_uri          text,
    embed_external_title        text,
    embed_external_description  text,
    embed_external_thumb_cid    text,
    embed_record_uri            text,
    embed_record_cid            text,
    embed_video_cid             text,
    embed_video_alt             text,
    created_at                  text,
    indexed_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX posts_did_idx ON posts (did, rkey DESC);
CREATE INDEX posts_reply_parent_idx ON posts (reply_parent_uri) WHERE reply_parent_uri IS NOT NULL;
CREATE INDEX posts_reply_root_idx ON posts (reply_root_uri) WHERE reply_root_uri IS NOT NULL;
CREATE INDEX posts_embed_record_idx ON posts (embed_record_uri) WHERE embed_record_uri IS NOT NULL;

CREATE TABLE likes (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    subject_uri  text,
    subject_cid  text,
    via_uri      text,
    via_cid      text,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX likes_subject_idx ON likes (subject_uri);
CREATE INDEX likes_did_idx ON likes (did, rkey DESC);

CREATE TABLE reposts (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    subject_uri  text,
    subject_cid  text,
    via_uri      text,
    via_cid      text,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reposts_subject_idx ON reposts (subject_uri);
CREATE INDEX reposts_did_idx ON reposts (did, rkey DESC);

CREATE TABLE follows (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    subject_did  text,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX follows_subject_idx ON follows (subject_did);
CREATE INDEX follows_did_idx ON follows (did, subject_did);

CREATE TABLE blocks (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    subject_did  text,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blocks_subject_idx ON blocks (subject_did);
CREATE INDEX blocks_did_idx ON blocks (did, subject_did);

CREATE TABLE lists (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    name         text,
    purpose      text,
    description  text,
    avatar_cid   text,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lists_did_idx ON lists (did);

CREATE TABLE list_items (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    list_uri     text,
    subject_did  text,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX list_items_list_idx ON list_items (list_uri, subject_did);
CREATE INDEX list_items_subject_idx ON list_items (subject_did);

CREATE TABLE list_blocks (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    list_uri     text,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX list_blocks_did_idx ON list_blocks (did);
CREATE INDEX list_blocks_list_idx ON list_blocks (list_uri);

CREATE TABLE profiles (
    uri              text PRIMARY KEY,
    did              text NOT NULL,
    rkey             text NOT NULL,
    cid              text NOT NULL,
    display_name     text,
    description      text,
    avatar_cid       text,
    banner_cid       text,
    pinned_post_uri  text,
    pinned_post_cid  text,
    created_at       text,
    indexed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX profiles_did_idx ON profiles (did);

CREATE TABLE feed_generators (
    uri           text PRIMARY KEY,
    did           text NOT NULL,
    rkey          text NOT NULL,
    cid           text NOT NULL,
    service_did   text,
    display_name  text,
    description   text,
    avatar_cid    text,
    created_at    text,
    indexed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feed_generators_did_idx ON feed_generators (did);

CREATE TABLE starter_packs (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    name         text,
    description  text,
    list_uri     text,
    feeds        jsonb,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX starter_packs_did_idx ON starter_packs (did);

CREATE TABLE threadgates (
    uri             text PRIMARY KEY,
    did             text NOT NULL,
    rkey            text NOT NULL,
    cid             text NOT NULL,
    post_uri        text,
    allow           jsonb,
    hidden_replies  jsonb,
    created_at      text,
    indexed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threadgates_post_idx ON threadgates (post_uri);

CREATE TABLE postgates (
    uri                      text PRIMARY KEY,
    did                      text NOT NULL,
    rkey                     text NOT NULL,
    cid                      text NOT NULL,
    post_uri                 text,
    detached_embedding_uris  jsonb,
    embedding_rules          jsonb,
    created_at               text,
    indexed_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX postgates_post_idx ON postgates (post_uri);

CREATE TABLE labeler_services (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    rkey         text NOT NULL,
    cid          text NOT NULL,
    policies     jsonb,
    created_at   text,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX labeler_services_did_idx ON labeler_services (did);

CREATE TABLE verifications (
    uri           text PRIMARY KEY,
    did           text NOT NULL,
    rkey          text NOT NULL,
    cid           text NOT NULL,
    subject_did   text,
    handle        text,
    display_name  text,
    created_at    text,
    indexed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verifications_subject_idx ON verifications (subject_did);

CREATE TABLE actor_statuses (
    uri               text PRIMARY KEY,
    did               text NOT NULL,
    rkey              text NOT NULL,
    cid               text NOT NULL,
    status            text,
    embed             jsonb,
    duration_minutes  bigint,
    created_at        text,
    indexed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actor_statuses_did_idx ON actor_statuses (did);

CREATE TABLE notification_declarations (
    uri                  text PRIMARY KEY,
    did                  text NOT NULL,
    rkey                 text NOT NULL,
    cid                  text NOT NULL,
    allow_subscriptions  text,
    indexed_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_declarations_did_idx ON notification_declarations (did);

CREATE TABLE chat_declarations (
    uri             text PRIMARY KEY,
    did             text NOT NULL,
    rkey            text NOT NULL,
    cid             text NOT NULL,
    allow_incoming  text,
    indexed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_declarations_did_idx ON chat_declarations (did);
