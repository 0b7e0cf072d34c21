-- A post's text is read from its record, not kept beside it (about 65
-- bytes a post): the `posts` view reads it as the index projected it (the
-- record's `text` when it is a string), and the full-text index is built
-- on that expression, which the view's column expands to in a query.
--
-- The newest posts of the network (search's latest, trends, the
-- dashboard) are found by the record key alone: ties on one key are
-- ordered by uri on reading. The index held the uri beside each key
-- (about 100 bytes an entry, 28 now).
DROP VIEW posts;
DROP INDEX posts_text_search_idx;
DROP INDEX posts_rkey_idx;
ALTER TABLE post_rows DROP COLUMN text;

CREATE INDEX posts_text_search_idx ON post_rows
    USING gin (to_tsvector('simple', COALESCE(json_string(record -> 'text'), '')));
CREATE INDEX posts_rkey_idx ON post_rows (rkey DESC);

CREATE VIEW posts AS
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
       p.created_at, p.indexed_at, p.record, p.violates_threadgate
FROM post_rows p WHERE p.live;

ANALYZE post_rows;
