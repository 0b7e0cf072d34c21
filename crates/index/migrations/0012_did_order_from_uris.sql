-- A record's uri is `at://<did>/<collection>/<rkey>`, so in byte order one
-- account's records of one collection are a contiguous range of the uri
-- primary key, sorted by rkey. Readers that list an account's likes,
-- reposts or follows newest first read that range backwards, and the
-- `(did, rkey)` indexes that served them are dropped: one index entry less
-- for seven events in ten. Lookups by did alone (account deletions,
-- `repo_progress`) use the `(did, subject)` indexes, which lead with did.
--
-- Byte order is the database's collation when skyhose creates it; in any
-- other, those ranges would not hold an account's records.
DO $$
BEGIN
    IF NOT ('B' < 'a' AND 'at://d/c/z' < 'at://d/c0') THEN
        RAISE EXCEPTION 'database % does not sort text in byte order (the C collation), which skyhose needs', current_database()
            USING HINT = 'create the database with CREATE DATABASE ... TEMPLATE template0 ENCODING ''UTF8'' LC_COLLATE ''C'' (or let skyhose create it), and index into it';
    END IF;
END
$$;

DROP INDEX likes_did_idx;
DROP INDEX reposts_did_idx;
DROP INDEX follows_did_rkey_idx;
