-- A like, repost or follow notifies one account, the owner of its subject,
-- and lives exactly as long as its record: its row in `like_rows`,
-- `repost_rows` or `follow_rows` already is the notification. So those
-- three reasons are no longer copied into `notifications` (a heap row and
-- two index entries for nine events in ten); a partial index by the
-- subject's owner finds them instead. `notifications` keeps what a record
-- causes beyond its own row: replies, mentions, quotes and the
-- `…-via-repost` reasons.
--
-- Every notification is ordered by the seq of the event that wrote its
-- record (the rows' `seq`), which both kinds of source share; a bigserial
-- id is no longer needed.

-- The indexes end with the order of a page, newest first. One seq is one
-- commit of one repo, so within a seq every record has the same did and
-- the rkey orders them as their uris do.
CREATE INDEX like_rows_notified_idx
    ON like_rows (split_part(subject_uri, '/', 3), seq DESC, rkey DESC)
    WHERE live AND did <> split_part(subject_uri, '/', 3);
CREATE INDEX repost_rows_notified_idx
    ON repost_rows (split_part(subject_uri, '/', 3), seq DESC, rkey DESC)
    WHERE live AND did <> split_part(subject_uri, '/', 3);
CREATE INDEX follow_rows_notified_idx ON follow_rows (subject_did, seq DESC, rkey DESC)
    WHERE live AND did <> subject_did;

DELETE FROM notifications WHERE reason IN ('like', 'repost', 'follow');
ALTER TABLE notifications ADD COLUMN seq bigint;
UPDATE notifications n SET seq = r.seq FROM all_records r WHERE r.uri = n.record_uri AND r.live;
-- A notification whose record is not live is never shown.
DELETE FROM notifications WHERE seq IS NULL;
ALTER TABLE notifications ALTER COLUMN seq SET NOT NULL;
DROP INDEX notifications_recipient_idx;
CREATE INDEX notifications_recipient_idx
    ON notifications (recipient_did, seq DESC, record_uri DESC, reason DESC);
ALTER TABLE notifications DROP COLUMN id, DROP COLUMN created_at;

-- Every notification, whichever table holds it: what the API lists, one
-- branch per table (it queries the branches apart, each by its index).
CREATE VIEW all_notifications AS
SELECT recipient_did, author_did, reason, reason_subject, record_uri, record_cid, seq, indexed_at
FROM notifications
UNION ALL
SELECT split_part(subject_uri, '/', 3), did, 'like', subject_uri, uri, cid, seq, indexed_at
FROM like_rows WHERE live AND did <> split_part(subject_uri, '/', 3)
UNION ALL
SELECT split_part(subject_uri, '/', 3), did, 'repost', subject_uri, uri, cid, seq, indexed_at
FROM repost_rows WHERE live AND did <> split_part(subject_uri, '/', 3)
UNION ALL
SELECT subject_did, did, 'follow', NULL, uri, cid, seq, indexed_at
FROM follow_rows WHERE live AND did <> subject_did;

ANALYZE notifications, like_rows, repost_rows, follow_rows;
