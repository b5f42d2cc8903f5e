-- Producers can ask for the fate of a transaction (query API GET /transactions/{id}), and a
-- repeated transaction id with a different payload is a recorded conflict, never silent.

-- The counted (first) occurrence of every id, with its payload: the conflict check compares
-- a repeat's amount and occurred_at with these (exactly: no hash, so no collision), and the
-- query API answers from this one row (a primary-key lookup). Rows stored before this
-- migration have NULL here: their repeats count as plain duplicates until a rebuild.
-- ADD COLUMN without a volatile default only changes the catalog (no table rewrite).
ALTER TABLE seen_transactions
    ADD COLUMN partition   integer,
    ADD COLUMN "offset"    bigint,
    ADD COLUMN amount      numeric,
    ADD COLUMN occurred_at timestamptz,
    ADD COLUMN recorded_at timestamptz,
    ADD COLUMN producer    text,
    ADD COLUMN duplicates  integer NOT NULL DEFAULT 0,  -- every later occurrence
    ADD COLUMN conflicts   integer NOT NULL DEFAULT 0;  -- of which, with another payload

-- One row per conflicting occurrence (keyed by its own position): both payloads, positions
-- and producers. Per projection version like every projection table, so a rebuild records
-- the same conflicts again in its own version (tests/integration/test_conflicts.py).
CREATE TABLE transaction_conflicts (
    version           integer     NOT NULL,
    transaction_id    text        NOT NULL,
    partition         integer     NOT NULL,
    "offset"          bigint      NOT NULL,
    amount            numeric     NOT NULL,
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL,
    producer          text        NOT NULL,
    first_partition   integer     NOT NULL,
    first_offset      bigint      NOT NULL,
    first_amount      numeric     NOT NULL,
    first_occurred_at timestamptz NOT NULL,
    first_producer    text        NOT NULL,
    detected_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, transaction_id, partition, "offset")
);
