-- Every post view shows the post's full record. Reading it from `records`
-- cost each hydrated post a descent of that table's primary key (every
-- record of every kind, the largest index) and a visit to a heap page that
-- is cold more often than not. The index now writes the record into the
-- post's own row, which the view reads anyway; `records.record` stays the
-- authority (getRecord, listRecords, tombstones).
ALTER TABLE posts ADD COLUMN record jsonb;

UPDATE posts p SET record = r.record FROM records r WHERE r.uri = p.uri;
