-- A post keeps its record's text once. The projected columns that only
-- readers of single posts or of a few candidate rows need (facets, langs,
-- tags, the reply CIDs, and the embed's parts other than its kind and the
-- URIs an index or a filter finds posts by) leave `post_rows`: the `posts`
-- view reads them from the record text, with the same rules the index used
-- to project them (`->>` for text, the first present of `embed.X` and
-- `embed.media.X`, a blob's `ref.$link` or legacy `cid`). What stays
-- projected: `text` (full-text search), `reply_root_uri`,
-- `reply_parent_uri`, `embed_record_uri` (indexed), `embed_type` and
-- `embed_external_uri` (filters), `created_at`.
DROP VIEW posts;

ALTER TABLE post_rows
    DROP COLUMN langs,
    DROP COLUMN tags,
    DROP COLUMN facets,
    DROP COLUMN reply_root_cid,
    DROP COLUMN reply_parent_cid,
    DROP COLUMN embed_images,
    DROP COLUMN embed_external_title,
    DROP COLUMN embed_external_description,
    DROP COLUMN embed_external_thumb_cid,
    DROP COLUMN embed_record_cid,
    DROP COLUMN embed_video_cid,
    DROP COLUMN embed_video_alt;

CREATE VIEW posts AS
SELECT p.uri, p.did, p.rkey, p.cid, p.text,
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
