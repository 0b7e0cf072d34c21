-- A record's counters (a post's likes, reposts, replies and quotes; the
-- likes of a feed generator, list or labeler) were keyed by its AT-URI:
-- about 75 bytes of text in the row and again in the primary key, which
-- every post view descends. They are now keyed as like rows reference
-- their subjects: (account id, collection id, record key), 16 bytes in
-- the key. The counters are 4-byte integers (a record with two billion
-- likes is not in sight).
--
-- A post row also keeps its own ids (`actor`, `rkey_id`), so that a view
-- finds its counters without turning text into ids: in SQL, a TID's value
-- costs about 6 microseconds and an account's id a descent of `dids`,
-- more than the descent by URI they replace.
--
-- A subject that is not exactly `at://<authority>/<collection>/<rkey>`
-- names no record any view shows; its counts are not kept (the index
-- counts such references in `skyhose_index_uncounted_subjects_total`).

ALTER TABLE post_counts RENAME TO post_counts_text;
ALTER TABLE post_counts_text RENAME CONSTRAINT post_counts_pkey TO post_counts_text_pkey;

INSERT INTO dids (did)
SELECT DISTINCT uri_authority(uri) FROM post_counts_text
WHERE uri_authority(uri) IS NOT NULL
ORDER BY 1
ON CONFLICT (did) DO NOTHING;

INSERT INTO collections (nsid)
SELECT DISTINCT split_part(uri, '/', 4) FROM post_counts_text
WHERE uri_authority(uri) IS NOT NULL
ON CONFLICT (nsid) DO NOTHING;

INSERT INTO rkey_names (rkey)
SELECT DISTINCT split_part(uri, '/', 5) FROM post_counts_text
WHERE uri_authority(uri) IS NOT NULL AND tid_int(split_part(uri, '/', 5)) IS NULL
ORDER BY 1
ON CONFLICT (rkey) DO NOTHING;

CREATE TABLE post_counts (
    actor      integer  NOT NULL,
    collection smallint NOT NULL,
    rkey       bigint   NOT NULL,
    likes      integer  NOT NULL DEFAULT 0,
    reposts    integer  NOT NULL DEFAULT 0,
    replies    integer  NOT NULL DEFAULT 0,
    quotes     integer  NOT NULL DEFAULT 0,
    PRIMARY KEY (actor, collection, rkey)
) WITH (fillfactor = 80);

INSERT INTO post_counts (actor, collection, rkey, likes, reposts, replies, quotes)
SELECT ref_actor(uri), ref_collection(uri), ref_rkey(uri), likes, reposts, replies, quotes
FROM post_counts_text
WHERE uri_authority(uri) IS NOT NULL AND (likes, reposts, replies, quotes) <> (0, 0, 0, 0)
ORDER BY 1, 2, 3;

DROP TABLE post_counts_text;

INSERT INTO dids (did) SELECT DISTINCT did FROM post_rows ORDER BY 1 ON CONFLICT (did) DO NOTHING;
INSERT INTO rkey_names (rkey)
SELECT DISTINCT rkey FROM post_rows WHERE tid_int(rkey) IS NULL ORDER BY 1
ON CONFLICT (rkey) DO NOTHING;

-- Added, then filled by a change of type: that rewrites the table once
-- (and rebuilds its indexes) instead of leaving a dead version of every
-- row behind, as an UPDATE would.
ALTER TABLE post_rows ADD COLUMN actor integer, ADD COLUMN rkey_id bigint;
ALTER TABLE post_rows
    ALTER COLUMN actor TYPE integer USING did_id(did),
    ALTER COLUMN rkey_id TYPE bigint USING rkey_id(rkey);
ALTER TABLE post_rows ALTER COLUMN actor SET NOT NULL, ALTER COLUMN rkey_id SET NOT NULL;

CREATE OR REPLACE VIEW posts AS
SELECT p.uri, p.did, p.rkey, p.cid, json_string(p.record -> 'text') AS text,
       p.record::jsonb -> 'langs' AS langs,
       p.record::jsonb -> 'tags' AS tags,
       p.record::jsonb -> 'facets' AS facets,
       p.reply_root_uri,
       p.record::jsonb -> 'reply' -> 'root' ->> 'cid' AS reply_root_cid,
       p.reply_parent_uri,
       p.record::jsonb -> 'reply' -> 'parent' ->> 'cid' AS reply_parent_cid,
       p.embed_type,
       COALESCE(p.record::jsonb -> 'embed' -> 'images',
                p.record::jsonb -> 'embed' -> 'media' -> 'images') AS embed_images,
       p.embed_external_uri,
       COALESCE(p.record::jsonb -> 'embed' -> 'external',
                p.record::jsonb -> 'embed' -> 'media' -> 'external') ->> 'title'
           AS embed_external_title,
       COALESCE(p.record::jsonb -> 'embed' -> 'external',
                p.record::jsonb -> 'embed' -> 'media' -> 'external') ->> 'description'
           AS embed_external_description,
       COALESCE(COALESCE(p.record::jsonb -> 'embed' -> 'external',
                         p.record::jsonb -> 'embed' -> 'media' -> 'external') -> 'thumb' -> 'ref' ->> '$link',
                COALESCE(p.record::jsonb -> 'embed' -> 'external',
                         p.record::jsonb -> 'embed' -> 'media' -> 'external') -> 'thumb' ->> 'cid')
           AS embed_external_thumb_cid,
       p.embed_record_uri,
       CASE p.record::jsonb -> 'embed' ->> '$type'
           WHEN 'app.bsky.embed.record' THEN p.record::jsonb -> 'embed' -> 'record' ->> 'cid'
           WHEN 'app.bsky.embed.recordWithMedia'
               THEN p.record::jsonb -> 'embed' -> 'record' -> 'record' ->> 'cid'
       END AS embed_record_cid,
       COALESCE(COALESCE(p.record::jsonb -> 'embed' -> 'video',
                         p.record::jsonb -> 'embed' -> 'media' -> 'video') -> 'ref' ->> '$link',
                COALESCE(p.record::jsonb -> 'embed' -> 'video',
                         p.record::jsonb -> 'embed' -> 'media' -> 'video') ->> 'cid')
           AS embed_video_cid,
       COALESCE(p.record::jsonb -> 'embed' ->> 'alt',
                p.record::jsonb -> 'embed' -> 'media' ->> 'alt') AS embed_video_alt,
       p.created_at, p.indexed_at, p.record, p.violates_threadgate, p.actor, p.rkey_id
FROM post_rows p WHERE p.live;

-- The counters of the record with the ids `actor` and `rkey` in the
-- collection named `collection`, for readers: `LEFT JOIN LATERAL
-- counts_of(p.actor, 'app.bsky.feed.post', p.rkey_id) c ON true`, no row
-- when nothing counts for it. The planner inlines it: one descent of the
-- primary key. The body names its arguments by position, since
-- `post_counts` has columns of those names.
CREATE FUNCTION counts_of(actor integer, collection text, rkey bigint)
RETURNS TABLE (likes bigint, reposts bigint, replies bigint, quotes bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT c.likes::bigint, c.reposts::bigint, c.replies::bigint, c.quotes::bigint
FROM post_counts c
WHERE c.actor = $1 AND c.collection = (SELECT n.id FROM collections n WHERE n.nsid = $2)
  AND c.rkey = $3
$$;
ANALYZE post_counts, post_rows;
