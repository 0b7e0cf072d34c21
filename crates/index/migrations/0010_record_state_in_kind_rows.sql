-- Nine events in ten write a post, like, repost or follow, and each such
-- record cost two rows: its state in `records` (rev, seq, live, JSON, a
-- primary-key entry) and its projection row beside it. The projection rows
-- of those four collections now carry the state themselves, tombstones
-- included, so each record is one row and one primary key, which is also
-- the row a batch locks. `records` keeps the other collections.
--
-- The tables are renamed `<kind>_rows`; a view under the old name shows the
-- live rows with the old columns, so readers see what they saw before. A
-- tombstone keeps the columns its record had (an update that changes no
-- indexed column stays on its page), without its CID and JSON.

ALTER TABLE posts RENAME TO post_rows;
ALTER TABLE likes RENAME TO like_rows;
ALTER TABLE reposts RENAME TO repost_rows;
ALTER TABLE follows RENAME TO follow_rows;

ALTER TABLE post_rows
    ALTER COLUMN cid DROP NOT NULL,
    ADD COLUMN rev text,
    ADD COLUMN seq bigint,
    ADD COLUMN live boolean NOT NULL DEFAULT true;
ALTER TABLE like_rows
    ALTER COLUMN cid DROP NOT NULL,
    ADD COLUMN record json,
    ADD COLUMN rev text,
    ADD COLUMN seq bigint,
    ADD COLUMN live boolean NOT NULL DEFAULT true;
ALTER TABLE repost_rows
    ALTER COLUMN cid DROP NOT NULL,
    ADD COLUMN record json,
    ADD COLUMN rev text,
    ADD COLUMN seq bigint,
    ADD COLUMN live boolean NOT NULL DEFAULT true;
ALTER TABLE follow_rows
    ALTER COLUMN cid DROP NOT NULL,
    ADD COLUMN record json,
    ADD COLUMN rev text,
    ADD COLUMN seq bigint,
    ADD COLUMN live boolean NOT NULL DEFAULT true;

UPDATE post_rows t SET rev = r.rev, seq = r.seq,
    record = COALESCE(t.record, r.record::json)
FROM records r WHERE r.uri = t.uri;
UPDATE like_rows t SET rev = r.rev, seq = r.seq, record = r.record::json
FROM records r WHERE r.uri = t.uri;
UPDATE repost_rows t SET rev = r.rev, seq = r.seq, record = r.record::json
FROM records r WHERE r.uri = t.uri;
UPDATE follow_rows t SET rev = r.rev, seq = r.seq, record = r.record::json
FROM records r WHERE r.uri = t.uri;

INSERT INTO post_rows (uri, did, rkey, rev, seq, live)
SELECT uri, did, rkey, rev, seq, false FROM records
WHERE collection = 'app.bsky.feed.post' AND NOT live;
INSERT INTO like_rows (uri, did, rkey, rev, seq, live)
SELECT uri, did, rkey, rev, seq, false FROM records
WHERE collection = 'app.bsky.feed.like' AND NOT live;
INSERT INTO repost_rows (uri, did, rkey, rev, seq, live)
SELECT uri, did, rkey, rev, seq, false FROM records
WHERE collection = 'app.bsky.feed.repost' AND NOT live;
INSERT INTO follow_rows (uri, did, rkey, rev, seq, live)
SELECT uri, did, rkey, rev, seq, false FROM records
WHERE collection = 'app.bsky.graph.follow' AND NOT live;

DELETE FROM records WHERE collection IN (
    'app.bsky.feed.post', 'app.bsky.feed.like',
    'app.bsky.feed.repost', 'app.bsky.graph.follow');

CREATE VIEW posts AS
SELECT uri, did, rkey, cid, text, langs, tags, facets,
       reply_root_uri, reply_root_cid, reply_parent_uri, reply_parent_cid,
       embed_type, embed_images, embed_external_uri, embed_external_title,
       embed_external_description, embed_external_thumb_cid,
       embed_record_uri, embed_record_cid, embed_video_cid, embed_video_alt,
       created_at, indexed_at, record
FROM post_rows WHERE live;

CREATE VIEW likes AS
SELECT uri, did, rkey, cid, subject_uri, subject_cid, via_uri, via_cid,
       created_at, indexed_at, record
FROM like_rows WHERE live;

CREATE VIEW reposts AS
SELECT uri, did, rkey, cid, subject_uri, subject_cid, via_uri, via_cid,
       created_at, indexed_at, record
FROM repost_rows WHERE live;

CREATE VIEW follows AS
SELECT uri, did, rkey, cid, subject_did, created_at, indexed_at, record
FROM follow_rows WHERE live;

-- Every record's state, wherever it is kept: what getRecord, notifications
-- and snapshots read by uri.
CREATE VIEW all_records AS
SELECT uri, did, collection, rkey, cid, rev, seq, live, record::json AS record
FROM records
UNION ALL
SELECT uri, did, 'app.bsky.feed.post', rkey, cid, rev, seq, live, record FROM post_rows
UNION ALL
SELECT uri, did, 'app.bsky.feed.like', rkey, cid, rev, seq, live, record FROM like_rows
UNION ALL
SELECT uri, did, 'app.bsky.feed.repost', rkey, cid, rev, seq, live, record FROM repost_rows
UNION ALL
SELECT uri, did, 'app.bsky.graph.follow', rkey, cid, rev, seq, live, record FROM follow_rows;

ANALYZE records, post_rows, like_rows, repost_rows, follow_rows;
