-- Likes, reposts and follows, the bulk of the network's records, store
-- less per row:
--
-- * `created_at` is a `timestamptz` when the record's `createdAt` is
--   exactly what `iso_millis` writes back (`YYYY-MM-DDTHH:MM:SS.mmmZ`, what
--   the official app writes), else NULL, and the record keeps its text,
--   from which the views read it: 8 bytes instead of 25;
-- * `cid` is NULL when the views rebuild the record (its text is NULL) and
--   its CID is the sha-256 of the record's canonical DAG-CBOR encoding,
--   which the views derive (`strong_ref_record_cid`, `follow_record_cid`):
--   37 bytes less. The indexer leaves it out only after computing the same
--   CID from the record's text (`skyhose_index::compact::derives_cid`);
-- * the columns are ordered so that no fixed-width value is padded;
-- * the notification indexes no longer hold the record key: within one
--   commit (one seq) the few rows of one recipient are sorted on reading.
--
-- The views show the same columns as before, rendered the same way.

-- A timestamp as every view writes it: UTC to the millisecond.
CREATE FUNCTION iso_millis(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The value of a JSON string, NULL for any other JSON value.
CREATE FUNCTION json_string(j json) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN json_typeof(j) = 'string' THEN j #>> '{}' END
$$;

-- A text string in DAG-CBOR: the head (major type 3, shortest length form)
-- and the UTF-8 bytes.
CREATE FUNCTION cbor_text(t text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE WHEN n < 24 THEN set_byte('\x00'::bytea, 0, 96 + n)
            WHEN n < 256 THEN set_byte('\x7800'::bytea, 1, n)
            WHEN n < 65536 THEN set_byte(set_byte('\x790000'::bytea, 1, n >> 8), 2, n & 255)
            ELSE set_byte(set_byte(set_byte(set_byte('\x7a00000000'::bytea,
                     1, n >> 24), 2, (n >> 16) & 255), 3, (n >> 8) & 255), 4, n & 255)
       END || b
FROM (SELECT convert_to(t, 'UTF8') AS b) AS s, LATERAL octet_length(s.b) AS n
$$;

-- The binary CID (CIDv1, dag-cbor, sha-256) of the record that
-- `rebuilt_strong_ref_record` writes: its map keys in DAG-CBOR order
-- (by length, then bytes): via, $type, subject, createdAt.
CREATE FUNCTION strong_ref_record_cid(
    collection text, created_at text, subject_cid text, subject_uri text,
    via_cid text, via_uri text
) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT '\x01711220'::bytea || sha256(
    CASE WHEN via_uri IS NULL THEN '\xa3'::bytea
         ELSE '\xa4'::bytea || cbor_text('via') || '\xa2'::bytea || cbor_text('cid')
              || cbor_text(via_cid) || cbor_text('uri') || cbor_text(via_uri) END
    || cbor_text('$type') || cbor_text(collection)
    || cbor_text('subject') || '\xa2'::bytea || cbor_text('cid') || cbor_text(subject_cid)
    || cbor_text('uri') || cbor_text(subject_uri)
    || cbor_text('createdAt') || cbor_text(created_at))
$$;

-- The same for `rebuilt_follow_record`: $type, subject, createdAt.
CREATE FUNCTION follow_record_cid(created_at text, subject_did text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT '\x01711220'::bytea || sha256('\xa3'::bytea
    || cbor_text('$type') || cbor_text('app.bsky.graph.follow')
    || cbor_text('subject') || cbor_text(subject_did)
    || cbor_text('createdAt') || cbor_text(created_at))
$$;

-- `createdAt` as stored: the timestamp when the text is exactly what
-- `iso_millis` writes back, else NULL (for converting earlier rows).
CREATE FUNCTION pg_temp.stored_time(t text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF t !~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' THEN
        RETURN NULL;
    END IF;
    RETURN CASE WHEN iso_millis(t::timestamptz) = t THEN t::timestamptz END;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    RETURN NULL;
END
$$;

ALTER TABLE like_rows RENAME TO like_rows_0026;
ALTER TABLE repost_rows RENAME TO repost_rows_0026;
ALTER TABLE follow_rows RENAME TO follow_rows_0026;
ALTER TABLE like_rows_0026 RENAME CONSTRAINT like_rows_pkey TO like_rows_0026_pkey;
ALTER TABLE repost_rows_0026 RENAME CONSTRAINT repost_rows_pkey TO repost_rows_0026_pkey;
ALTER TABLE follow_rows_0026 RENAME CONSTRAINT follow_rows_pkey TO follow_rows_0026_pkey;

-- Columns by alignment: the 4-byte ids in pairs, the 8-byte values, the
-- smaller ones, then the variable-length ones. A typical like is 101 bytes
-- of data (it was 160).
CREATE TABLE like_rows (
    actor              integer NOT NULL,
    subject_actor      integer,
    rkey               bigint NOT NULL,
    subject_rkey       bigint,
    seq                bigint,
    indexed_at         timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz,
    via_rkey           bigint,
    via_actor          integer,
    subject_collection smallint,
    via_collection     smallint,
    live               boolean NOT NULL,
    subject_cid        bytea,
    via_cid            bytea,
    -- NULL when the views derive it (above)
    cid                bytea,
    -- the record's CID when it has no binary form (NULL for nearly all)
    cid_string         text,
    rev                text,
    record             json,
    PRIMARY KEY (actor, rkey)
);
CREATE TABLE repost_rows (LIKE like_rows INCLUDING ALL);

CREATE TABLE follow_rows (
    actor         integer NOT NULL,
    subject_actor integer,
    rkey          bigint NOT NULL,
    seq           bigint,
    indexed_at    timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz,
    live          boolean NOT NULL,
    cid           bytea,
    cid_string    text,
    rev           text,
    record        json,
    PRIMARY KEY (actor, rkey)
);

-- Rows written before this migration, converted through the views they
-- had (which follow the renamed tables): a record whose `createdAt` has no
-- stored form keeps its text, and a rebuilt record whose CID is the
-- derived one stores none.
CREATE FUNCTION pg_temp.convert_strong_refs(source regclass, state regclass, target regclass,
                                             collection text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($sql$
        INSERT INTO %3$s (actor, subject_actor, rkey, subject_rkey, seq, indexed_at, created_at,
                          via_rkey, via_actor, subject_collection, via_collection, live,
                          subject_cid, via_cid, cid, cid_string, rev, record)
        SELECT o.actor, o.subject_actor, o.rkey, o.subject_rkey, o.seq, o.indexed_at, t.at,
               o.via_rkey, o.via_actor, o.subject_collection, o.via_collection, o.live,
               o.subject_cid, o.via_cid,
               CASE WHEN o.record IS NOT NULL OR t.at IS NULL OR NOT o.live
                         OR o.cid IS DISTINCT FROM strong_ref_record_cid(%4$L, s.created_at,
                             s.subject_cid, s.subject_uri, s.via_cid, s.via_uri)
                    THEN o.cid END,
               o.cid_string, o.rev,
               CASE WHEN o.live AND t.at IS NULL THEN s.record ELSE o.record END
        FROM %1$s o JOIN %2$s s ON s.actor = o.actor AND s.rkey_id = o.rkey
        CROSS JOIN LATERAL (SELECT pg_temp.stored_time(o.created_at) AS at) AS t
        $sql$, source, state, target, collection);
END
$$;
SELECT pg_temp.convert_strong_refs('like_rows_0026', 'like_state', 'like_rows',
                                   'app.bsky.feed.like');
SELECT pg_temp.convert_strong_refs('repost_rows_0026', 'repost_state', 'repost_rows',
                                   'app.bsky.feed.repost');

INSERT INTO follow_rows (actor, subject_actor, rkey, seq, indexed_at, created_at, live, cid,
                         cid_string, rev, record)
SELECT o.actor, o.subject_actor, o.rkey, o.seq, o.indexed_at, t.at, o.live,
       CASE WHEN o.record IS NOT NULL OR t.at IS NULL OR NOT o.live
                 OR o.cid IS DISTINCT FROM follow_record_cid(s.created_at, s.subject_did)
            THEN o.cid END,
       o.cid_string, o.rev,
       CASE WHEN o.live AND t.at IS NULL THEN s.record ELSE o.record END
FROM follow_rows_0026 o JOIN follow_state s ON s.actor = o.actor AND s.rkey_id = o.rkey
CROSS JOIN LATERAL (SELECT pg_temp.stored_time(o.created_at) AS at) AS t;

DROP VIEW all_notifications;
DROP VIEW repo_progress;
DROP VIEW all_records;
DROP VIEW likes;
DROP VIEW reposts;
DROP VIEW follows;
DROP VIEW like_state;
DROP VIEW repost_state;
DROP VIEW follow_state;
DROP TABLE like_rows_0026;
DROP TABLE repost_rows_0026;
DROP TABLE follow_rows_0026;

-- Indexes, each with the reads that need it (docs/schema.md), as before
-- except the notification indexes.
CREATE INDEX like_rows_subject_idx ON like_rows (subject_actor, subject_rkey, rkey DESC)
    WHERE live;
CREATE INDEX like_rows_actor_subject_idx ON like_rows (actor, subject_actor, subject_rkey)
    WHERE live;
CREATE INDEX repost_rows_subject_idx ON repost_rows (subject_actor, subject_rkey, rkey DESC)
    WHERE live;
CREATE INDEX repost_rows_actor_subject_idx ON repost_rows (actor, subject_actor, subject_rkey)
    WHERE live;
CREATE INDEX follow_rows_subject_idx ON follow_rows (subject_actor, rkey DESC) WHERE live;
CREATE INDEX follow_rows_actor_subject_idx ON follow_rows (actor, subject_actor) WHERE live;
-- The notifications of the subject's owner, newest first.
CREATE INDEX like_rows_notified_idx ON like_rows (subject_actor, seq DESC)
    WHERE live AND actor <> subject_actor;
CREATE INDEX repost_rows_notified_idx ON repost_rows (subject_actor, seq DESC)
    WHERE live AND actor <> subject_actor;
CREATE INDEX follow_rows_notified_idx ON follow_rows (subject_actor, seq DESC)
    WHERE live AND actor <> subject_actor;

-- Every row (tombstones too) with the text columns, beside the compact
-- keys, for likes and reposts alike.
CREATE FUNCTION pg_temp.strong_ref_state_view(view_name text, source regclass,
                                              collection text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($sql$
        CREATE VIEW %1$I AS
        SELECT 'at://' || a.did || '/%3$s/' || rkey_text(l.rkey) AS uri,
               a.did, rkey_text(l.rkey) AS rkey,
               COALESCE(cid_text(l.cid), l.cid_string,
                        CASE WHEN l.live AND l.record IS NULL THEN
                            cid_text(strong_ref_record_cid(%3$L, iso_millis(l.created_at),
                                cid_text(l.subject_cid),
                                'at://' || sd.did || '/' || sc.nsid || '/' || rkey_text(l.subject_rkey),
                                cid_text(l.via_cid),
                                'at://' || vd.did || '/' || vc.nsid || '/' || rkey_text(l.via_rkey)))
                        END) AS cid,
               l.rev, l.seq, l.live,
               COALESCE(('at://' || sd.did || '/' || sc.nsid || '/' || rkey_text(l.subject_rkey)),
                        l.record -> 'subject' ->> 'uri') AS subject_uri,
               COALESCE(cid_text(l.subject_cid), l.record -> 'subject' ->> 'cid') AS subject_cid,
               COALESCE(('at://' || vd.did || '/' || vc.nsid || '/' || rkey_text(l.via_rkey)),
                        l.record -> 'via' ->> 'uri') AS via_uri,
               COALESCE(cid_text(l.via_cid), l.record -> 'via' ->> 'cid') AS via_cid,
               COALESCE(iso_millis(l.created_at), json_string(l.record -> 'createdAt'))
                   AS created_at,
               l.indexed_at,
               CASE WHEN l.live THEN COALESCE(l.record, rebuilt_strong_ref_record(%3$L,
                   iso_millis(l.created_at), cid_text(l.subject_cid),
                   ('at://' || sd.did || '/' || sc.nsid || '/' || rkey_text(l.subject_rkey)),
                   cid_text(l.via_cid),
                   ('at://' || vd.did || '/' || vc.nsid || '/' || rkey_text(l.via_rkey)))) END
                   AS record,
               l.actor, l.rkey AS rkey_id, l.subject_actor, l.subject_collection, l.subject_rkey
        FROM %2$s l JOIN dids a ON a.id = l.actor
            LEFT JOIN dids sd ON sd.id = l.subject_actor
            LEFT JOIN collections sc ON sc.id = l.subject_collection
            LEFT JOIN dids vd ON vd.id = l.via_actor
            LEFT JOIN collections vc ON vc.id = l.via_collection
        $sql$, view_name, source, collection);
END
$$;
SELECT pg_temp.strong_ref_state_view('like_state', 'like_rows', 'app.bsky.feed.like');
SELECT pg_temp.strong_ref_state_view('repost_state', 'repost_rows', 'app.bsky.feed.repost');

CREATE VIEW follow_state AS
SELECT 'at://' || a.did || '/app.bsky.graph.follow/' || rkey_text(f.rkey) AS uri,
       a.did, rkey_text(f.rkey) AS rkey,
       COALESCE(cid_text(f.cid), f.cid_string,
                CASE WHEN f.live AND f.record IS NULL THEN
                    cid_text(follow_record_cid(iso_millis(f.created_at), s.did)) END) AS cid,
       f.rev, f.seq, f.live, s.did AS subject_did,
       COALESCE(iso_millis(f.created_at), json_string(f.record -> 'createdAt')) AS created_at,
       f.indexed_at,
       CASE WHEN f.live THEN COALESCE(f.record,
           rebuilt_follow_record(iso_millis(f.created_at), s.did)) END AS record,
       f.actor, f.rkey AS rkey_id, f.subject_actor
FROM follow_rows f JOIN dids a ON a.id = f.actor LEFT JOIN dids s ON s.id = f.subject_actor;

CREATE VIEW likes AS
SELECT uri, did, rkey, cid, subject_uri, subject_cid, via_uri, via_cid, created_at, indexed_at,
       record, actor, rkey_id, subject_actor, subject_collection, subject_rkey, seq
FROM like_state WHERE live;

CREATE VIEW reposts AS
SELECT uri, did, rkey, cid, subject_uri, subject_cid, via_uri, via_cid, created_at, indexed_at,
       record, actor, rkey_id, subject_actor, subject_collection, subject_rkey, seq
FROM repost_state WHERE live;

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

ANALYZE like_rows, repost_rows, follow_rows;
