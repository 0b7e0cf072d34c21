-- The backfill queue (skyhose-sync): one row per repo to fetch, verify and
-- load. Workers claim rows with FOR UPDATE SKIP LOCKED, so several processes
-- share the queue; a row left `running` by a process that died is claimed
-- again once its claim is older than the claim timeout. Nothing about a repo
-- is kept in memory between claims, so a network of tens of millions of
-- repos costs rows here, not RAM.
CREATE TABLE backfill_repos (
    did          text PRIMARY KEY,
    -- The base URL the repo is fetched from (its PDS, or the source).
    host         text NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'done', 'failed')),
    -- The rev loaded by the last successful attempt.
    rev          text,
    records      bigint NOT NULL DEFAULT 0,
    bytes        bigint NOT NULL DEFAULT 0,
    attempts     integer NOT NULL DEFAULT 0,
    -- A short fixed reason (metrics label) and the full message.
    error_reason text,
    error        text,
    -- A pending row is not claimed before this (retry backoff, rate limits).
    not_before   timestamptz NOT NULL DEFAULT now(),
    claimed_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Claiming reads the oldest due pending rows, and reclaiming the oldest
-- running claims; done and failed rows are never scanned for work.
CREATE INDEX backfill_repos_pending ON backfill_repos (not_before)
    WHERE state = 'pending';
CREATE INDEX backfill_repos_running ON backfill_repos (claimed_at)
    WHERE state = 'running';
CREATE INDEX backfill_repos_failed ON backfill_repos (updated_at)
    WHERE state = 'failed';

-- Where enumeration of a source (`listRepos` on a relay or PDS) stopped:
-- the cursor of the next page, and whether the listing reached its end.
CREATE TABLE backfill_sources (
    source     text PRIMARY KEY,
    cursor     text,
    complete   boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
