-- SQL functions that ran as queries of their own where a plain expression
-- does. A call that PostgreSQL does not inline runs the function's body
-- through the executor, a few microseconds each, and a statement's first
-- call also parses and plans it.

-- `uri_authority` was declared STRICT. PostgreSQL inlines a strict SQL
-- function only when its body is strict too, and a CASE is not, so every
-- call ran as a query (about 4 microseconds; a timeline's post views
-- called it about 44 times). Its body gives NULL for a NULL uri anyway (a
-- NULL match takes the CASE's missing ELSE), so the function answers the
-- same called on NULL input, and is inlined.
ALTER FUNCTION uri_authority(text) CALLED ON NULL INPUT;

-- `rkey_text` of NULL (a like or repost without `via` renders its absent
-- reference) took the ELSE branch and looked the name up by a NULL id:
-- a query that finds nothing, about 6 microseconds for every such row a
-- view read. Both branches now test their sign, so NULL gives NULL at
-- once.
CREATE OR REPLACE FUNCTION rkey_text(k bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT CASE WHEN k >= 0 THEN tid_text(k) WHEN k < 0 THEN rkey_name(-k) END
$$;

-- `rebuilt_strong_ref_record` named `via_uri` twice (its test and its
-- text), and the views pass it an expression that renders a reference,
-- which PostgreSQL will not copy into two places: the function ran as a
-- query for every like or repost whose record a view rebuilt (about 8
-- microseconds; 20 to 30 a page of notifications). Written with each
-- argument once, it is inlined. The text is the same: the indexer leaves
-- a record to be rebuilt only when `via` has both its CID and its URI or
-- neither.
CREATE OR REPLACE FUNCTION rebuilt_strong_ref_record(
    collection text, created_at text, subject_cid text, subject_uri text,
    via_cid text, via_uri text
) RETURNS json LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT ('{"$type":"' || collection || '","createdAt":"' || created_at
    || '","subject":{"cid":"' || subject_cid || '","uri":"' || subject_uri || '"}'
    || COALESCE(',"via":{"cid":"' || via_cid || '","uri":"' || via_uri || '"}', '')
    || '}')::json
$$;
