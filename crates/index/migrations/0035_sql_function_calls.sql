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
