-- A starter pack's view counts the accounts that joined through it (all
-- time and in the last week), as the official AppView does: the profiles
-- whose `joinedViaStarterPack` names the pack, by their `createdAt`. The
-- profile's projection row keeps the pack's URI, indexed with the
-- profile's creation time, so both counts read one range of the index.
ALTER TABLE profiles ADD COLUMN joined_via_starter_pack_uri text;

UPDATE profiles p
SET joined_via_starter_pack_uri = r.record->'joinedViaStarterPack'->>'uri'
FROM records r
WHERE r.uri = p.uri AND r.live AND jsonb_typeof(r.record->'joinedViaStarterPack'->'uri') = 'string';

CREATE INDEX profiles_joined_via_starter_pack_idx ON profiles (joined_via_starter_pack_uri, created_at)
    WHERE joined_via_starter_pack_uri IS NOT NULL;
