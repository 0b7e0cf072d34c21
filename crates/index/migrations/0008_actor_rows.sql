-- Every post, repost and reply of a page shows its author's profile view,
-- which read four tables per actor: `actors`, the profile record, the
-- counts and the chat declaration, four B-tree descents each. What those
-- views show now lives in the actor's own row, written by the one statement
-- per batch that already updates it: the counts (one row version per actor
-- and batch instead of a counts row beside it) and the fields of the
-- profile and chat declaration records (rkey `self`), which stay in their
-- projection tables for search and getRecord.
ALTER TABLE actors
    ADD COLUMN followers bigint NOT NULL DEFAULT 0,
    ADD COLUMN follows bigint NOT NULL DEFAULT 0,
    ADD COLUMN posts bigint NOT NULL DEFAULT 0,
    ADD COLUMN lists bigint NOT NULL DEFAULT 0,
    ADD COLUMN feedgens bigint NOT NULL DEFAULT 0,
    ADD COLUMN starter_packs bigint NOT NULL DEFAULT 0,
    ADD COLUMN labelers bigint NOT NULL DEFAULT 0,
    ADD COLUMN display_name text,
    ADD COLUMN description text,
    ADD COLUMN avatar_cid text,
    ADD COLUMN banner_cid text,
    ADD COLUMN pinned_post_uri text,
    ADD COLUMN pinned_post_cid text,
    ADD COLUMN profile_created_at text,
    ADD COLUMN profile_indexed_at timestamptz,
    ADD COLUMN chat_allow_incoming text;

-- Counted actors that never wrote anything (followed, say) get a row that
-- stays invisible (`indexed` false) until they do.
INSERT INTO actors (did)
SELECT c.did FROM actor_counts c
WHERE NOT EXISTS (SELECT 1 FROM actors a WHERE a.did = c.did);

UPDATE actors a
SET followers = c.followers, follows = c.follows, posts = c.posts, lists = c.lists,
    feedgens = c.feedgens, starter_packs = c.starter_packs, labelers = c.labelers
FROM actor_counts c WHERE c.did = a.did;

UPDATE actors a
SET display_name = p.display_name, description = p.description, avatar_cid = p.avatar_cid,
    banner_cid = p.banner_cid, pinned_post_uri = p.pinned_post_uri,
    pinned_post_cid = p.pinned_post_cid, profile_created_at = p.created_at,
    profile_indexed_at = p.indexed_at
FROM profiles p WHERE p.uri = 'at://' || a.did || '/app.bsky.actor.profile/self';

UPDATE actors a SET chat_allow_incoming = d.allow_incoming
FROM chat_declarations d WHERE d.uri = 'at://' || a.did || '/chat.bsky.actor.declaration/self';

DROP TABLE actor_counts;
