-- Labels and takedowns (skyhose-labels, `skyhose takedown`).
--
-- `labelers`: each labeler whose stream is read, by a small id so label
-- rows do not repeat its DID, with `cursor`, the seq of the last
-- subscribeLabels event whose labels are stored (written in the same
-- transaction as them, so a restart resumes after it without loss).
CREATE TABLE labelers (
    id     serial PRIMARY KEY,
    did    text NOT NULL UNIQUE,
    cursor bigint NOT NULL DEFAULT 0
);

-- `labels`: per labeler, subject and value, the label with the latest
-- `cts`; negations are rows too (`neg`), so a negation that arrives before
-- the older label it negates still wins, a replay changes nothing and a
-- newer label after a negation takes its place. A label is in force when it
-- is not a negation and `exp` is not past. `cts` and `exp` are kept as
-- sent, since `sig` covers them; `uri` is an account DID or a record's
-- AT-URI, `cid` set when the label is about one version of the record.
CREATE TABLE labels (
    uri  text NOT NULL,
    src  integer NOT NULL REFERENCES labelers (id),
    val  text NOT NULL,
    cid  text,
    neg  boolean NOT NULL,
    cts  text NOT NULL,
    exp  text,
    sig  bytea NOT NULL,
    ver  smallint,
    PRIMARY KEY (uri, src, val)
);

-- `takedowns`: subjects (a DID or a record's AT-URI) the operator took
-- down, with why; `skyhose restore` deletes the row.
CREATE TABLE takedowns (
    subject    text PRIMARY KEY,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
