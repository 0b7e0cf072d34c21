-- Repo sync beside the live index (skyhose_index::apply::sync, skyhose-sync).
--
-- `repo_roots`: the MST root (`data`) of each repo's newest applied commit,
-- at its `rev`, so a commit whose `prevData` is not that root shows the
-- index missed part of the repo's history. It is its own table rather than
-- a column of `actors`: actor rows are written only when something on them
-- changes (see repo_progress), and a root moves with every commit. `data`
-- NULL: the root at `rev` is not known (a #sync, or an entry without it).
CREATE TABLE repo_roots (
    did  text PRIMARY KEY,
    rev  text NOT NULL,
    data text
);

-- Why a repo is queued: `listed` (found by listRepos), `first_seen` (the
-- live index met the account), `requested` (`backfill --did`) or
-- `resync:<cause>` (the live index saw the repo diverge from what it holds).
-- A NULL `host` is the PDS named in the account's DID document. `again`: a
-- resync was asked for while the repo was being loaded, so it is loaded
-- once more when that load ends.
ALTER TABLE backfill_repos
    ALTER COLUMN host DROP NOT NULL,
    ADD COLUMN reason text NOT NULL DEFAULT 'listed',
    ADD COLUMN again boolean NOT NULL DEFAULT false;
