-- `uri_authority` was declared STRICT. PostgreSQL inlines a strict SQL
-- function only when its body is strict too, and a CASE is not, so every
-- call ran the body as a query of its own (about 4 microseconds; a
-- timeline's post views called it about 44 times). Its body gives NULL
-- for a NULL uri anyway (a NULL match takes the CASE's missing ELSE), so
-- the function answers the same called on NULL input, and is inlined.
ALTER FUNCTION uri_authority(text) CALLED ON NULL INPUT;
