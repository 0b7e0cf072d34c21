-- Most likes, reposts and follows are exactly what their row's columns
-- say: `{"$type":…,"createdAt":…,"subject":…}` with the keys in the order
-- ingest writes them. The index stores such a record's JSON as NULL, and
-- the views rebuild the same text from the columns. That was a third of
-- each row and of its WAL, and parsing it as `json` on the way in. A
-- record with anything else (another field, another order, an escaped
-- character) keeps its text, so what readers get is always the text as
-- written. The indexer compares a record's text with the rebuilt one
-- before it leaves it out; the two renderings must stay the same.
CREATE FUNCTION rebuilt_strong_ref_record(
    collection text, created_at text, subject_cid text, subject_uri text,
    via_cid text, via_uri text
) RETURNS json LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT ('{"$type":"' || collection || '","createdAt":"' || created_at
    || '","subject":{"cid":"' || subject_cid || '","uri":"' || subject_uri || '"}'
    || CASE WHEN via_uri IS NULL THEN '' ELSE
           ',"via":{"cid":"' || via_cid || '","uri":"' || via_uri || '"}' END
    || '}')::json
$$;

CREATE FUNCTION rebuilt_follow_record(created_at text, subject_did text)
RETURNS json LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT ('{"$type":"app.bsky.graph.follow","createdAt":"' || created_at
    || '","subject":"' || subject_did || '"}')::json
$$;

CREATE OR REPLACE VIEW likes AS
SELECT uri, did, rkey, cid, subject_uri, subject_cid, via_uri, via_cid,
       created_at, indexed_at,
       COALESCE(record, rebuilt_strong_ref_record('app.bsky.feed.like',
           created_at, subject_cid, subject_uri, via_cid, via_uri)) AS record
FROM like_rows WHERE live;

CREATE OR REPLACE VIEW reposts AS
SELECT uri, did, rkey, cid, subject_uri, subject_cid, via_uri, via_cid,
       created_at, indexed_at,
       COALESCE(record, rebuilt_strong_ref_record('app.bsky.feed.repost',
           created_at, subject_cid, subject_uri, via_cid, via_uri)) AS record
FROM repost_rows WHERE live;

CREATE OR REPLACE VIEW follows AS
SELECT uri, did, rkey, cid, subject_did, created_at, indexed_at,
       COALESCE(record, rebuilt_follow_record(created_at, subject_did)) AS record
FROM follow_rows WHERE live;

-- A tombstone keeps its projected columns: only a live row is rebuilt.
CREATE OR REPLACE VIEW all_records AS
SELECT uri, did, collection, rkey, cid, rev, seq, live, record::json AS record
FROM records
UNION ALL
SELECT uri, did, 'app.bsky.feed.post', rkey, cid, rev, seq, live, record FROM post_rows
UNION ALL
SELECT uri, did, 'app.bsky.feed.like', rkey, cid, rev, seq, live,
       CASE WHEN live THEN COALESCE(record, rebuilt_strong_ref_record('app.bsky.feed.like',
           created_at, subject_cid, subject_uri, via_cid, via_uri)) END
FROM like_rows
UNION ALL
SELECT uri, did, 'app.bsky.feed.repost', rkey, cid, rev, seq, live,
       CASE WHEN live THEN COALESCE(record, rebuilt_strong_ref_record('app.bsky.feed.repost',
           created_at, subject_cid, subject_uri, via_cid, via_uri)) END
FROM repost_rows
UNION ALL
SELECT uri, did, 'app.bsky.graph.follow', rkey, cid, rev, seq, live,
       CASE WHEN live THEN COALESCE(record, rebuilt_follow_record(created_at, subject_did)) END
FROM follow_rows;
