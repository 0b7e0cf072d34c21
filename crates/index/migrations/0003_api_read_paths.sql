-- Read paths of the XRPC API: keyset pagination newest-first on each listing,
-- the viewer's own likes/reposts of a post, and full-text search.

-- getFollowers / getFollows, newest follow first.
CREATE INDEX follows_subject_rkey_idx ON follows (subject_did, rkey DESC, uri DESC);
CREATE INDEX follows_did_rkey_idx ON follows (did, rkey DESC, uri DESC);

-- getLikes / getRepostedBy pages, and "did the viewer like this post".
DROP INDEX likes_subject_idx;
CREATE INDEX likes_subject_rkey_idx ON likes (subject_uri, rkey DESC, uri DESC);
CREATE INDEX likes_did_subject_idx ON likes (did, subject_uri);
DROP INDEX reposts_subject_idx;
CREATE INDEX reposts_subject_rkey_idx ON reposts (subject_uri, rkey DESC, uri DESC);
CREATE INDEX reposts_did_subject_idx ON reposts (did, subject_uri);

-- getBlocks, getLists, getActorFeeds, getActorStarterPacks, getList.
CREATE INDEX blocks_did_rkey_idx ON blocks (did, rkey DESC, uri DESC);
CREATE INDEX lists_did_rkey_idx ON lists (did, rkey DESC, uri DESC);
CREATE INDEX feed_generators_did_rkey_idx ON feed_generators (did, rkey DESC, uri DESC);
CREATE INDEX starter_packs_did_rkey_idx ON starter_packs (did, rkey DESC, uri DESC);
CREATE INDEX list_items_list_rkey_idx ON list_items (list_uri, rkey DESC, uri DESC);

-- searchPosts: PostgreSQL full-text over the post text, language-neutral.
CREATE INDEX posts_text_search_idx ON posts USING gin (to_tsvector('simple', COALESCE(text, '')));
CREATE INDEX posts_rkey_idx ON posts (rkey DESC, uri DESC);

-- searchActors / searchActorsTypeahead: handle and display-name prefixes,
-- full-text over display name and description.
CREATE INDEX actors_handle_prefix_idx ON actors (handle text_pattern_ops) WHERE indexed;
CREATE INDEX profiles_display_name_prefix_idx ON profiles (lower(display_name) text_pattern_ops);
CREATE INDEX profiles_search_idx ON profiles
    USING gin (to_tsvector('simple', COALESCE(display_name, '') || ' ' || COALESCE(description, '')));
