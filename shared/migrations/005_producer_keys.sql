-- A producer's ids are its own (issue 24): a transaction is (producer, transaction_id), the
-- producer being the JWT subject that posted it. The same id from two producers is two
-- transactions; a repeat and a conflict are only ever within one producer. Both land on one
-- partition: the message key stays the transaction id.

-- The counted occurrence of every key. Rows stored before migration 003 have no producer: they
-- get producer '' (no producer is empty) and go on claiming their id for every producer, so a
-- later occurrence of that id, whoever posts it, stays a duplicate of it (nothing is counted
-- twice) until a rebuild re-derives every key from the log. `legacy_ids` marks the versions
-- holding such rows: only their commits look for them.
-- The key leads with the id (ids differ early: a comparison seldom reaches the producer) and
-- compares as bytes (COLLATE "C"): its order means nothing to anyone, and comparisons are most
-- of what inserting a key costs.
UPDATE seen_transactions SET producer = '' WHERE producer IS NULL;
ALTER TABLE seen_transactions DROP CONSTRAINT seen_transactions_pkey,
    ALTER COLUMN producer SET NOT NULL,
    ALTER COLUMN producer TYPE text COLLATE "C",
    ALTER COLUMN transaction_id TYPE text COLLATE "C",
    ADD PRIMARY KEY (version, transaction_id, producer);
ALTER TABLE projection_versions ADD COLUMN legacy_ids boolean NOT NULL DEFAULT false;
UPDATE projection_versions AS v SET legacy_ids = true
WHERE EXISTS (SELECT 1 FROM seen_transactions AS s WHERE s.version = v.version AND s.producer = '');

-- Conflicts are looked up by the key of the transaction they repeat.
ALTER TABLE transaction_conflicts DROP CONSTRAINT transaction_conflicts_pkey,
    ALTER COLUMN producer TYPE text COLLATE "C",
    ALTER COLUMN transaction_id TYPE text COLLATE "C",
    ADD PRIMARY KEY (version, producer, transaction_id, partition, "offset");

-- Until now another producer's occurrence of an id was a repeat of the first producer's,
-- recorded as a conflict when its payload differed. Now it is a transaction of its own: the
-- first such occurrence of each (producer, id) is counted (in the totals and buckets of its
-- partition), the later ones are its repeats (conflicts when their payload differs from it),
-- and the first producer's counts lose them. An occurrence that had the very payload of the
-- first producer's was never recorded but in its `duplicates`: it stays counted there (a
-- rebuild counts it as a transaction, so its verification would report the difference).
CREATE TEMPORARY TABLE crossed ON COMMIT DROP AS
SELECT c.*,
       row_number() OVER (PARTITION BY version, producer, transaction_id
                          ORDER BY partition, "offset") AS n,
       floor(extract(epoch FROM occurred_at))::bigint AS second,
       floor(extract(epoch FROM occurred_at) / 60)::bigint AS minute
FROM transaction_conflicts AS c
WHERE c.producer <> c.first_producer;

CREATE TEMPORARY TABLE crossed_first ON COMMIT DROP AS
SELECT * FROM crossed WHERE n = 1;

UPDATE seen_transactions AS s SET
    duplicates = s.duplicates - x.moved, conflicts = s.conflicts - x.moved
FROM (SELECT version, first_producer, transaction_id, count(*)::int AS moved
      FROM crossed GROUP BY version, first_producer, transaction_id) AS x
WHERE s.version = x.version AND s.producer = x.first_producer
  AND s.transaction_id = x.transaction_id;

INSERT INTO seen_transactions
    (version, producer, transaction_id, partition, "offset", amount, occurred_at, recorded_at,
     duplicates, conflicts)
SELECT f.version, f.producer, f.transaction_id, f.partition, f."offset", f.amount,
       f.occurred_at, f.recorded_at,
       (SELECT count(*) FROM crossed AS r
         WHERE (r.version, r.producer, r.transaction_id) = (f.version, f.producer, f.transaction_id)
           AND r.n > 1),
       (SELECT count(*) FROM crossed AS r
         WHERE (r.version, r.producer, r.transaction_id) = (f.version, f.producer, f.transaction_id)
           AND r.n > 1 AND (r.amount <> f.amount OR r.occurred_at <> f.occurred_at))
FROM crossed_first AS f;

UPDATE partition_totals AS t SET
    tx_count = t.tx_count + f.c, tx_sum = t.tx_sum + f.s,
    tx_max = GREATEST(t.tx_max, f.mx), tx_min = LEAST(t.tx_min, f.mn)
FROM (SELECT version, partition, count(*) AS c, sum(amount) AS s, max(amount) AS mx,
             min(amount) AS mn
      FROM crossed_first GROUP BY version, partition) AS f
WHERE t.version = f.version AND t.partition = f.partition;

INSERT INTO second_buckets AS b (version, bucket, partition, tx_count, tx_sum, tx_max, tx_min)
SELECT version, second, partition, count(*), sum(amount), max(amount), min(amount)
FROM crossed_first GROUP BY version, second, partition
ON CONFLICT (version, bucket, partition) DO UPDATE SET
    tx_count = b.tx_count + EXCLUDED.tx_count, tx_sum = b.tx_sum + EXCLUDED.tx_sum,
    tx_max = GREATEST(b.tx_max, EXCLUDED.tx_max), tx_min = LEAST(b.tx_min, EXCLUDED.tx_min);

INSERT INTO minute_buckets AS b (version, bucket, partition, tx_count, tx_sum, tx_max, tx_min)
SELECT version, minute, partition, count(*), sum(amount), max(amount), min(amount)
FROM crossed_first GROUP BY version, minute, partition
ON CONFLICT (version, bucket, partition) DO UPDATE SET
    tx_count = b.tx_count + EXCLUDED.tx_count, tx_sum = b.tx_sum + EXCLUDED.tx_sum,
    tx_max = GREATEST(b.tx_max, EXCLUDED.tx_max), tx_min = LEAST(b.tx_min, EXCLUDED.tx_min);

-- The crossed rows leave: the first of each key is counted now, a later one is a conflict of
-- it only when its payload differs.
DELETE FROM transaction_conflicts AS c USING crossed AS r
WHERE (c.version, c.producer, c.transaction_id, c.partition, c."offset")
    = (r.version, r.producer, r.transaction_id, r.partition, r."offset");

INSERT INTO transaction_conflicts
    (version, producer, transaction_id, partition, "offset", amount, occurred_at, recorded_at,
     first_partition, first_offset, first_amount, first_occurred_at, first_producer,
     detected_at)
SELECT r.version, r.producer, r.transaction_id, r.partition, r."offset", r.amount,
       r.occurred_at, r.recorded_at, f.partition, f."offset", f.amount, f.occurred_at,
       f.producer, r.detected_at
FROM crossed AS r
JOIN crossed_first AS f USING (version, producer, transaction_id)
WHERE r.n > 1 AND (r.amount <> f.amount OR r.occurred_at <> f.occurred_at);
