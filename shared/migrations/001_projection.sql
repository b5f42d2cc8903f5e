-- The statistics projection. Every row belongs to a projection version, so a rebuild can fill
-- a new version while the active one keeps serving reads (see projector/rebuild.py).

CREATE TABLE projection_versions (
    version      integer PRIMARY KEY,
    state        text NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    until_spec   text
);

-- Exactly one row: the version readers read and the live projector folds into. The live
-- projector reads it FOR SHARE in every batch transaction; a swap updates it.
CREATE TABLE projection_active (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   integer NOT NULL REFERENCES projection_versions (version)
);

INSERT INTO projection_versions (version, state, activated_at) VALUES (1, 'active', now());
INSERT INTO projection_active (version) VALUES (1);

-- One row per (version, partition): the totals folded from that partition and the next
-- offset to consume, written in the same transaction (exactly-once).
CREATE TABLE partition_totals (
    version        integer NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL DEFAULT 0,
    log_end_offset bigint  NOT NULL DEFAULT 0,
    tx_count       bigint  NOT NULL DEFAULT 0,
    tx_sum         numeric NOT NULL DEFAULT 0,
    tx_max         numeric,
    tx_min         numeric,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, partition)
);

-- Dedupe: a transaction id is counted once per version, whatever partition it came from.
CREATE TABLE seen_transactions (
    version        integer NOT NULL,
    transaction_id text    NOT NULL,
    PRIMARY KEY (version, transaction_id)
);

-- Event-time buckets for windows: 1-second buckets for the partial minute at a window's
-- start, 1-minute buckets for the rest; a window of up to an hour reads at most 120 rows.
CREATE TABLE second_buckets (
    version  integer NOT NULL,
    bucket   bigint  NOT NULL,          -- epoch second
    tx_count bigint  NOT NULL,
    tx_sum   numeric NOT NULL,
    tx_max   numeric NOT NULL,
    tx_min   numeric NOT NULL,
    PRIMARY KEY (version, bucket)
);

CREATE TABLE minute_buckets (
    version  integer NOT NULL,
    bucket   bigint  NOT NULL,          -- epoch minute (epoch second div 60)
    tx_count bigint  NOT NULL,
    tx_sum   numeric NOT NULL,
    tx_max   numeric NOT NULL,
    tx_min   numeric NOT NULL,
    PRIMARY KEY (version, bucket)
);

-- Messages the projector could not decode: skipped, never counted, kept for inspection.
CREATE TABLE poison_events (
    version     integer NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint  NOT NULL,
    reason      text    NOT NULL,
    payload     bytea,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, partition, "offset")
);
