-- An account's live posts newest first (getAuthorFeed, the timeline, list
-- feeds, an account deletion's sweep) are read from an index of live posts
-- alone: the feeds read only `did` and `rkey` (a post's uri is
-- `at://<did>/app.bsky.feed.post/<rkey>`), so the timeline's scan of each
-- followed account's newest posts is index-only, with no heap fetch per
-- post to learn whether it is live. Tombstones leave the index, which
-- makes it smaller than the one it replaces.
CREATE INDEX post_rows_author_idx ON post_rows (did, rkey DESC) WHERE live;
DROP INDEX posts_did_idx;
