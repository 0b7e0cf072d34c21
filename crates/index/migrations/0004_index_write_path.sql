-- Every batch reads the recorded account deletions of its actors; only a
-- few accounts have one.
CREATE INDEX actors_deleted_idx ON actors (did) WHERE deleted_seq IS NOT NULL;

-- Notifications are looked up by the record that caused them only to delete
-- them with it: equality only, so a hash index, a fraction of the btree's
-- size, which keeps more of it cached and fewer of its pages in the WAL.
DROP INDEX notifications_record_idx;
CREATE INDEX notifications_record_idx ON notifications USING hash (record_uri);

-- Prefixes of the API's (…, rkey, uri) indexes of 0003: every lookup they
-- served is served by the longer index, and each costs an insert per row.
DROP INDEX follows_subject_idx;
DROP INDEX lists_did_idx;
DROP INDEX feed_generators_did_idx;
DROP INDEX starter_packs_did_idx;

-- Rows updated in place by nearly every batch: free space in each page lets
-- the new version stay on it (a HOT update, no index insert).
ALTER TABLE actors SET (fillfactor = 80);
ALTER TABLE post_counts SET (fillfactor = 80);
ALTER TABLE actor_counts SET (fillfactor = 80);
