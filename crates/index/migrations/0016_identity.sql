-- Identity resolution (skyhose_index::identity). `handle` now holds the
-- handle the account's DID document claims and that resolves back to its
-- DID (`handle_verified` true), NULL when that check failed
-- (`handle_verified` false, shown as `handle.invalid`), or, while no check
-- has finished (`handle_verified` NULL), the hint of the latest #identity
-- event. The index marks an account due (`identity_due_at`) when it first
-- sees it and on every #identity; the identity task resolves due accounts
-- and records the outcome, or retries after `identity_failures` transient
-- failures with growing delays.
ALTER TABLE actors
    ADD COLUMN handle_verified boolean,
    ADD COLUMN identity_due_at timestamptz,
    ADD COLUMN identity_checked_at timestamptz,
    ADD COLUMN identity_failures integer NOT NULL DEFAULT 0;

-- Accounts indexed before this migration are resolved once too.
UPDATE actors SET identity_due_at = now()
WHERE indexed AND status NOT IN ('deleted', 'takendown');

CREATE INDEX actors_identity_due_idx ON actors (identity_due_at)
    WHERE identity_due_at IS NOT NULL;
