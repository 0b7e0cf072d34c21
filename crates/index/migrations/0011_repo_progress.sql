-- A repo's progress (rev and seq of its newest indexed commit) was written
-- to its actor row by every batch with a commit of it: about one actor row
-- per event, a fifth of the server's time. Every post, like, repost and
-- follow row already keeps the rev and seq of the op that last wrote it,
-- tombstones included, so the actor row now carries progress only for
-- commits that leave no such row (no ops, or ops on collections kept in
-- `records`), and `repo_progress` takes the newest of all of them. Read it
-- by did: each branch then uses its table's did index.
CREATE VIEW repo_progress AS
SELECT did, max(seq) AS seq, (array_agg(rev ORDER BY seq DESC))[1] AS rev
FROM (
    SELECT did, last_rev AS rev, last_seq AS seq FROM actors WHERE last_seq IS NOT NULL
    UNION ALL SELECT did, rev, seq FROM post_rows WHERE seq IS NOT NULL
    UNION ALL SELECT did, rev, seq FROM like_rows WHERE seq IS NOT NULL
    UNION ALL SELECT did, rev, seq FROM repost_rows WHERE seq IS NOT NULL
    UNION ALL SELECT did, rev, seq FROM follow_rows WHERE seq IS NOT NULL
) AS progress
GROUP BY did;
