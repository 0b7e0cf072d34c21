-- Functions of the compact keys and derived CIDs, rewritten for speed with
-- the same arguments and results; every view and index that uses them
-- stays as it is.
--
-- `tid_int` (a TID record key as its integer) summed thirteen digits with
-- a subquery over `generate_series`, about 70 microseconds a call; the
-- API's lookups of the viewer's likes and reposts of a page's posts call
-- it once a post (60 posts: 5 ms). Written out as one expression, which
-- PostgreSQL inlines, `rkey_id` takes about 20.
--
-- The views' derived CIDs (migration 0027) as PL/pgSQL. As SQL functions
-- they are inlined into a view only when every argument is a constant:
-- `strong_ref_record_cid` names `via_uri` twice, so with column arguments
-- each call ran as a nested SQL function, about 550 microseconds a like or
-- repost shown (a timeline page's 15 reposts: 8 ms), and
-- `follow_record_cid` about 170. In PL/pgSQL the arguments are
-- parameters: about 200 and 150 with the rest of the view's columns.

CREATE OR REPLACE FUNCTION tid_int(t text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN t ~ '^[2-7a-j][2-7a-z]{12}$' THEN
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 1, 1)) - 1)::bigint << 60) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 2, 1)) - 1)::bigint << 55) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 3, 1)) - 1)::bigint << 50) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 4, 1)) - 1)::bigint << 45) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 5, 1)) - 1)::bigint << 40) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 6, 1)) - 1)::bigint << 35) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 7, 1)) - 1)::bigint << 30) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 8, 1)) - 1)::bigint << 25) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 9, 1)) - 1)::bigint << 20) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 10, 1)) - 1)::bigint << 15) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 11, 1)) - 1)::bigint << 10) |
    ((strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 12, 1)) - 1)::bigint << 5) |
    (strpos('234567abcdefghijklmnopqrstuvwxyz', substr(t, 13, 1)) - 1)::bigint
END
$$;

CREATE OR REPLACE FUNCTION strong_ref_record_cid(
    collection text, created_at text, subject_cid text, subject_uri text,
    via_cid text, via_uri text
) RETURNS bytea LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN '\x01711220'::bytea || sha256(
        CASE WHEN via_uri IS NULL THEN '\xa3'::bytea
             ELSE '\xa4'::bytea || cbor_text('via') || '\xa2'::bytea || cbor_text('cid')
                  || cbor_text(via_cid) || cbor_text('uri') || cbor_text(via_uri) END
        || cbor_text('$type') || cbor_text(collection)
        || cbor_text('subject') || '\xa2'::bytea || cbor_text('cid') || cbor_text(subject_cid)
        || cbor_text('uri') || cbor_text(subject_uri)
        || cbor_text('createdAt') || cbor_text(created_at));
END
$$;

CREATE OR REPLACE FUNCTION follow_record_cid(created_at text, subject_did text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN '\x01711220'::bytea || sha256('\xa3'::bytea
        || cbor_text('$type') || cbor_text('app.bsky.graph.follow')
        || cbor_text('subject') || cbor_text(subject_did)
        || cbor_text('createdAt') || cbor_text(created_at));
END
$$;
