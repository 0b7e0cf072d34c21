-- Every profile view shows what an actor runs (`associated`: lists, feed
-- generators, starter packs, a labeler). Counting four tables per actor
-- made that most of a page's actor lookups; the index now keeps the counts
-- with the actor's other counts, exact under replays like them.
ALTER TABLE actor_counts
    ADD COLUMN lists bigint NOT NULL DEFAULT 0,
    ADD COLUMN feedgens bigint NOT NULL DEFAULT 0,
    ADD COLUMN starter_packs bigint NOT NULL DEFAULT 0,
    ADD COLUMN labelers bigint NOT NULL DEFAULT 0;

INSERT INTO actor_counts AS c (did, lists)
SELECT did, count(*) FROM lists GROUP BY did
ON CONFLICT (did) DO UPDATE SET lists = excluded.lists;

INSERT INTO actor_counts AS c (did, feedgens)
SELECT did, count(*) FROM feed_generators GROUP BY did
ON CONFLICT (did) DO UPDATE SET feedgens = excluded.feedgens;

INSERT INTO actor_counts AS c (did, starter_packs)
SELECT did, count(*) FROM starter_packs GROUP BY did
ON CONFLICT (did) DO UPDATE SET starter_packs = excluded.starter_packs;

INSERT INTO actor_counts AS c (did, labelers)
SELECT did, count(*) FROM labeler_services GROUP BY did
ON CONFLICT (did) DO UPDATE SET labelers = excluded.labelers;
