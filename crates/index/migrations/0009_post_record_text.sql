-- `posts.record` is only ever read whole, as the JSON text a post view
-- embeds: as `jsonb` every read rebuilt that text from the binary form
-- (about 2 µs per post, some 40 per author-feed page) and every write parsed
-- it into that form. As `json` the text is stored as written (the index
-- writes canonical data-model JSON) and read back as is. `records.record`
-- stays `jsonb`: it is the authority queried by field.
ALTER TABLE posts ALTER COLUMN record TYPE json USING record::json;
