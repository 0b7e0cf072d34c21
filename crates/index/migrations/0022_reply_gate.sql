-- A reply whose thread's root has a threadgate that does not let its
-- author reply is marked when the reply is indexed, as the official AppView
-- does: it is not counted in its parent's `post_counts.replies`, notifies
-- no one of a reply, and threads leave it out. The decision is taken once,
-- when the reply is written (or rewritten): a threadgate written or changed
-- later, or a follow or list item that comes or goes, does not revisit it.
ALTER TABLE post_rows ADD COLUMN violates_threadgate boolean NOT NULL DEFAULT false;

CREATE OR REPLACE VIEW posts AS
SELECT uri, did, rkey, cid, text, langs, tags, facets,
       reply_root_uri, reply_root_cid, reply_parent_uri, reply_parent_cid,
       embed_type, embed_images, embed_external_uri, embed_external_title,
       embed_external_description, embed_external_thumb_cid,
       embed_record_uri, embed_record_cid, embed_video_cid, embed_video_alt,
       created_at, indexed_at, record, violates_threadgate
FROM post_rows WHERE live;

-- The replies among `uris` (written by `repliers`, in the threads of
-- `roots`; a NULL root is not a reply) that the gate of their root post
-- disallows. The gate is the root author's threadgate with the root's rkey;
-- the root's author may always reply, a gate without `allow` lets anyone
-- and an empty `allow` no one; otherwise one rule must let the replier in:
-- mentioned in the root post, following the root's author, followed by
-- them, or in one of the listed lists. Only replies whose root has a gate
-- read anything beyond that gate's row. Set-based, so that a batch judges
-- all its replies in one statement.
CREATE FUNCTION threadgate_violations(uris text[], repliers text[], roots text[])
RETURNS TABLE (uri text) LANGUAGE sql STABLE AS $$
SELECT v.uri
FROM unnest(uris, repliers, roots) AS v(uri, replier, root)
JOIN threadgates tg ON tg.uri = 'at://' || split_part(v.root, '/', 3)
    || '/app.bsky.feed.threadgate/' || split_part(v.root, '/', 5)
WHERE v.replier <> split_part(v.root, '/', 3)
  AND jsonb_typeof(tg.allow) = 'array'
  AND NOT (
    (tg.allow @> '[{"$type": "app.bsky.feed.threadgate#mentionRule"}]'
     AND EXISTS (SELECT 1 FROM posts r WHERE r.uri = v.root
                 AND r.facets @> jsonb_build_array(jsonb_build_object('features',
                     jsonb_build_array(jsonb_build_object(
                         '$type', 'app.bsky.richtext.facet#mention', 'did', v.replier))))))
    OR (tg.allow @> '[{"$type": "app.bsky.feed.threadgate#followerRule"}]'
        AND EXISTS (SELECT 1 FROM follows f
                    WHERE f.did = v.replier AND f.subject_did = split_part(v.root, '/', 3)))
    OR (tg.allow @> '[{"$type": "app.bsky.feed.threadgate#followingRule"}]'
        AND EXISTS (SELECT 1 FROM follows f
                    WHERE f.did = split_part(v.root, '/', 3) AND f.subject_did = v.replier))
    OR EXISTS (SELECT 1
               FROM jsonb_array_elements(CASE WHEN jsonb_typeof(tg.allow) = 'array' THEN tg.allow END) AS rule
               JOIN list_items li ON li.list_uri = rule->>'list' AND li.subject_did = v.replier
               WHERE rule->>'$type' = 'app.bsky.feed.threadgate#listRule')
  )
$$;

-- Replies indexed before this migration are judged once now, against the
-- gates, follows and list items as they stand, and their counts and reply
-- notifications are taken back the same way a batch would have left them.
WITH gated AS MATERIALIZED (
    SELECT p.uri, p.did, p.reply_root_uri FROM threadgates tg
    JOIN posts p ON p.reply_root_uri = 'at://' || tg.did || '/app.bsky.feed.post/' || tg.rkey
), bad AS (
    SELECT b.uri FROM threadgate_violations(
        ARRAY(SELECT uri FROM gated ORDER BY uri),
        ARRAY(SELECT did FROM gated ORDER BY uri),
        ARRAY(SELECT reply_root_uri FROM gated ORDER BY uri)) b
), marked AS (
    UPDATE post_rows p SET violates_threadgate = true FROM bad
    WHERE p.uri = bad.uri
    RETURNING p.uri, p.reply_parent_uri
), unnotified AS (
    DELETE FROM notifications n USING marked m
    WHERE n.record_uri = m.uri AND n.reason = 'reply'
)
UPDATE post_counts c SET replies = c.replies - m.n
FROM (SELECT reply_parent_uri, count(*) AS n FROM marked
      WHERE reply_parent_uri IS NOT NULL GROUP BY 1) m
WHERE c.uri = m.reply_parent_uri;
