-- `app.bsky.actor.getSuggestions` ranks served accounts by followers:
-- reading this index backwards from the top (or from a cursor's
-- (followers, did)) finds a page without sorting every account.
CREATE INDEX actors_followers_idx ON actors (followers, did) WHERE status = 'active' AND indexed;
