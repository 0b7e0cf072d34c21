-- The profile records that carry self-labels: the only part of a profile
-- record an actor's view reads beside the actor row. Every view of an
-- actor probed `records` by uri for it (about 18 microseconds a probe on
-- the 1M-post index of `bench api`: an author feed's 28 authors, 0.5 ms of
-- its 4.7). This index holds only those records, a page or two, so the
-- probe reads what is cached; its cost to a write is one test of the
-- record's keys.
CREATE INDEX records_labeled_profiles_idx ON records (uri)
    WHERE collection = 'app.bsky.actor.profile' AND live AND record ? 'labels';
