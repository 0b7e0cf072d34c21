-- Follows kept compact, as likes and reposts are since migration 0021: a
-- row is keyed by (the author's `dids` id, the record key as `int8`), the
-- followed account is its `dids` id and the CID is binary. A follow's
-- subject is always a DID (the index validates it), and every text has an
-- id in `dids`, so the subject always has its compact form: only a record
-- whose text the columns do not rebuild keeps it, as before.
--
-- The views `follow_state` (every row) and `follows` (live rows) show the
-- text columns readers had, beside the compact keys; a reader that selects
-- by an account names the keys, or filters `did`/`subject_did`, which are
-- the dictionary's own columns and so found by its index.

DROP VIEW all_notifications;
DROP VIEW repo_progress;
DROP VIEW all_records;
DROP VIEW follows;
ALTER TABLE follow_rows RENAME TO follow_rows_text;
DROP INDEX follow_rows_notified_idx;

-- Columns by alignment: the two 4-byte ids together, then the 8-byte
-- values, then the variable-length ones.
CREATE TABLE follow_rows (
    actor         integer NOT NULL,
    subject_actor integer,
    rkey          bigint NOT NULL,
    seq           bigint,
    indexed_at    timestamptz NOT NULL DEFAULT now(),
    live          boolean NOT NULL,
    cid           bytea,
    -- the record's CID when it has no binary form (NULL for nearly all)
    cid_string    text,
    rev           text,
    created_at    text,
    record        json,
    PRIMARY KEY (actor, rkey)
);

-- Rows written before this migration, converted.

INSERT INTO dids (did)
SELECT did FROM (
    SELECT did FROM follow_rows_text UNION SELECT subject_did FROM follow_rows_text
) AS d(did)
WHERE did IS NOT NULL ORDER BY did
ON CONFLICT (did) DO NOTHING;

INSERT INTO rkey_names (rkey)
SELECT DISTINCT rkey FROM follow_rows_text WHERE tid_int(rkey) IS NULL
ON CONFLICT (rkey) DO NOTHING;

-- A subject always has an id now, so a record the views rebuilt still is.
INSERT INTO follow_rows (actor, subject_actor, rkey, seq, indexed_at, live, cid, cid_string,
                         rev, created_at, record)
SELECT did_id(o.did), did_id(o.subject_did), rkey_id(o.rkey), o.seq, o.indexed_at, o.live,
       cid_bytes(o.cid), CASE WHEN cid_bytes(o.cid) IS NULL THEN o.cid END, o.rev, o.created_at,
       o.record
FROM follow_rows_text o;
DROP TABLE follow_rows_text;

-- Indexes, each with the reads that need it (docs/schema.md):
-- an account's followers newest first (getFollowers,
-- getSuggestedFollowsByActor);
CREATE INDEX follow_rows_subject_idx ON follow_rows (subject_actor, rkey DESC) WHERE live;
-- whether one account follows another (relationships, viewer.following
-- and followedBy, knownFollowers, knownLikers, threadgates' follower
-- rules), and the accounts one follows (the timeline's authors);
CREATE INDEX follow_rows_actor_subject_idx ON follow_rows (actor, subject_actor) WHERE live;
-- the follow notifications of the followed account, newest first.
CREATE INDEX follow_rows_notified_idx ON follow_rows (subject_actor, seq DESC, rkey DESC)
    WHERE live AND actor <> subject_actor;

-- Every row (tombstones too) with the text columns the table had before,
-- beside the compact keys. The subject's DID is the dictionary's column (a
-- filter on it finds the id by the dictionary's index); a row born a
-- tombstone has none.
CREATE VIEW follow_state AS
SELECT 'at://' || a.did || '/app.bsky.graph.follow/' || rkey_text(f.rkey) AS uri,
       a.did, rkey_text(f.rkey) AS rkey, COALESCE(cid_text(f.cid), f.cid_string) AS cid,
       f.rev, f.seq, f.live, s.did AS subject_did, f.created_at, f.indexed_at,
       CASE WHEN f.live THEN COALESCE(f.record, rebuilt_follow_record(f.created_at, s.did)) END
           AS record,
       f.actor, f.rkey AS rkey_id, f.subject_actor
FROM follow_rows f JOIN dids a ON a.id = f.actor LEFT JOIN dids s ON s.id = f.subject_actor;

CREATE VIEW follows AS
SELECT uri, did, rkey, cid, subject_did, created_at, indexed_at, record,
       actor, rkey_id, subject_actor, seq
FROM follow_state WHERE live;

CREATE VIEW all_records AS
SELECT uri, did, collection, rkey, cid, rev, seq, live, record::json AS record
FROM records
UNION ALL
SELECT uri, did, 'app.bsky.feed.post', rkey, cid, rev, seq, live, record FROM post_rows
UNION ALL
SELECT uri, did, 'app.bsky.feed.like', rkey, cid, rev, seq, live, record FROM like_state
UNION ALL
SELECT uri, did, 'app.bsky.feed.repost', rkey, cid, rev, seq, live, record FROM repost_state
UNION ALL
SELECT uri, did, 'app.bsky.graph.follow', rkey, cid, rev, seq, live, record FROM follow_state;

-- `all_records` for the records `uris`, each found by its table's key.
CREATE OR REPLACE FUNCTION records_at(uris text[])
RETURNS TABLE (uri text, did text, collection text, rkey text, cid text, rev text, seq bigint,
               live boolean, record json)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT r.uri, r.did, r.collection, r.rkey, r.cid, r.rev, r.seq, r.live, r.record::json
FROM records r WHERE r.uri = ANY(uris)
UNION ALL
SELECT p.uri, p.did, 'app.bsky.feed.post', p.rkey, p.cid, p.rev, p.seq, p.live, p.record
FROM post_rows p WHERE p.uri = ANY(uris)
UNION ALL
SELECT s.uri, s.did, 'app.bsky.graph.follow', s.rkey, s.cid, s.rev, s.seq, s.live, s.record
FROM unnest(uris) AS u(uri)
JOIN follow_state s ON s.actor = ref_actor(u.uri) AND s.rkey_id = ref_rkey(u.uri)
WHERE u.uri LIKE 'at://%/app.bsky.graph.follow/%' AND s.uri = u.uri
UNION ALL
SELECT s.uri, s.did, 'app.bsky.feed.like', s.rkey, s.cid, s.rev, s.seq, s.live, s.record
FROM unnest(uris) AS u(uri)
JOIN like_state s ON s.actor = ref_actor(u.uri) AND s.rkey_id = ref_rkey(u.uri)
WHERE u.uri LIKE 'at://%/app.bsky.feed.like/%' AND s.uri = u.uri
UNION ALL
SELECT s.uri, s.did, 'app.bsky.feed.repost', s.rkey, s.cid, s.rev, s.seq, s.live, s.record
FROM unnest(uris) AS u(uri)
JOIN repost_state s ON s.actor = ref_actor(u.uri) AND s.rkey_id = ref_rkey(u.uri)
WHERE u.uri LIKE 'at://%/app.bsky.feed.repost/%' AND s.uri = u.uri
$$;

CREATE VIEW all_notifications AS
SELECT recipient_did, author_did, reason, reason_subject, record_uri, record_cid, seq, indexed_at
FROM notifications
UNION ALL
SELECT o.did, s.did, 'like', s.subject_uri, s.uri, s.cid, s.seq, s.indexed_at
FROM like_state s JOIN dids o ON o.id = s.subject_actor
WHERE s.live AND s.actor <> s.subject_actor
UNION ALL
SELECT o.did, s.did, 'repost', s.subject_uri, s.uri, s.cid, s.seq, s.indexed_at
FROM repost_state s JOIN dids o ON o.id = s.subject_actor
WHERE s.live AND s.actor <> s.subject_actor
UNION ALL
SELECT s.subject_did, s.did, 'follow', NULL, s.uri, s.cid, s.seq, s.indexed_at
FROM follow_state s WHERE s.live AND s.actor <> s.subject_actor;

CREATE VIEW repo_progress AS
SELECT did, max(seq) AS seq, (array_agg(rev ORDER BY seq DESC))[1] AS rev
FROM (
    SELECT did, last_rev AS rev, last_seq AS seq FROM actors WHERE last_seq IS NOT NULL
    UNION ALL SELECT did, rev, seq FROM post_rows WHERE seq IS NOT NULL
    UNION ALL SELECT a.did, l.rev, l.seq FROM like_rows l JOIN dids a ON a.id = l.actor
              WHERE l.seq IS NOT NULL
    UNION ALL SELECT a.did, r.rev, r.seq FROM repost_rows r JOIN dids a ON a.id = r.actor
              WHERE r.seq IS NOT NULL
    UNION ALL SELECT a.did, f.rev, f.seq FROM follow_rows f JOIN dids a ON a.id = f.actor
              WHERE f.seq IS NOT NULL
) AS progress
GROUP BY did;

ANALYZE dids, rkey_names, follow_rows;
