-- Nine events in ten are a post, like, repost or follow, and each record
-- cost an entry in the (did, collection, rkey) index of `records`, which
-- only an account deletion's sweep reads. The projection tables of those
-- four kinds already lead an index with `did`, so the sweep reads them there
-- and `records` indexes only the other kinds' live rows.
DROP INDEX records_did_collection_idx;
CREATE INDEX records_did_unprojected_idx ON records (did, collection, rkey)
    WHERE live AND collection NOT IN (
        'app.bsky.feed.post', 'app.bsky.feed.like',
        'app.bsky.feed.repost', 'app.bsky.graph.follow');

-- Notifications are read by recipient (its index holds `id`, the page
-- cursor) and deleted by record; nothing looks one up by `id` alone, and
-- the sequence keeps ids unique without an index insert per row.
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
