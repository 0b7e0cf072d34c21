-- Actor rows are created just before the batch that needs them, in their own
-- short transaction; `indexed` turns true when an event of the actor has been
-- committed, so rows left by batches that were then rejected stay invisible.
ALTER TABLE actors ADD COLUMN indexed boolean NOT NULL DEFAULT false;
