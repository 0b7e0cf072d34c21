-- The notifications the index stores (replies, mentions, quotes, and likes
-- and reposts through a repost) keep only what their record does not say:
-- the author is the record's repo (the authority of `record_uri`), and the
-- record's CID is read with the record when a page is listed, so neither
-- is stored (about 100 bytes a row). The recipient's index holds
-- (recipient, seq): within one commit (one seq) the few notifications of
-- one recipient are sorted on reading, so the record URI and the reason
-- leave the index (it was the largest of the database after the likes').

ALTER TABLE notifications RENAME TO notifications_0027;
ALTER INDEX notifications_recipient_idx RENAME TO notifications_0027_recipient_idx;
ALTER INDEX notifications_record_idx RENAME TO notifications_0027_record_idx;

-- Columns by alignment: the 8-byte values, then the variable-length ones.
CREATE TABLE notifications (
    seq            bigint NOT NULL,
    indexed_at     timestamptz NOT NULL DEFAULT now(),
    recipient_did  text NOT NULL,
    reason         text NOT NULL,
    reason_subject text,
    record_uri     text NOT NULL
);
INSERT INTO notifications (seq, indexed_at, recipient_did, reason, reason_subject, record_uri)
SELECT seq, indexed_at, recipient_did, reason, reason_subject, record_uri
FROM notifications_0027;

DROP VIEW all_notifications;
DROP TABLE notifications_0027;

-- A recipient's notifications, newest first (listNotifications,
-- getUnreadCount).
CREATE INDEX notifications_recipient_idx ON notifications (recipient_did, seq DESC);
-- A record's notifications, dropped with it, and the reply walk's check
-- that an account was not notified of a post already.
CREATE INDEX notifications_record_idx ON notifications USING hash (record_uri);

CREATE VIEW all_notifications AS
SELECT recipient_did, split_part(record_uri, '/', 3) AS author_did, reason, reason_subject,
       record_uri, seq, indexed_at
FROM notifications
UNION ALL
SELECT o.did, s.did, 'like', s.subject_uri, s.uri, s.seq, s.indexed_at
FROM like_state s JOIN dids o ON o.id = s.subject_actor
WHERE s.live AND s.actor <> s.subject_actor
UNION ALL
SELECT o.did, s.did, 'repost', s.subject_uri, s.uri, s.seq, s.indexed_at
FROM repost_state s JOIN dids o ON o.id = s.subject_actor
WHERE s.live AND s.actor <> s.subject_actor
UNION ALL
SELECT s.subject_did, s.did, 'follow', NULL, s.uri, s.seq, s.indexed_at
FROM follow_state s WHERE s.live AND s.actor <> s.subject_actor;

ANALYZE notifications;
