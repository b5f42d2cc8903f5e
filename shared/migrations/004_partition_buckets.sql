-- Every row a batch commit writes belongs to the partitions that commit folds (issue 23): the
-- time buckets are kept per partition too, so projectors folding different partitions never
-- write the same row. A window read merges its bucket range over the partitions (at most 120
-- rows per partition for an hour).
--
-- Buckets folded before this migration were global: they stay, under partition -1, a legacy
-- partition no commit writes, and every read merges them like any partition's rows (they hold
-- what was folded before, the new rows what is folded after). A rebuild writes every bucket
-- under its partition: a new version has no legacy rows.
--
-- ADD COLUMN with a constant default only changes the catalog (no table rewrite); dropping the
-- default at once keeps -1 for the existing rows and makes every new row name its partition.
-- The primary key leads with the bucket, so a window's range is one index range scan.
ALTER TABLE second_buckets ADD COLUMN partition integer NOT NULL DEFAULT -1;
ALTER TABLE second_buckets ALTER COLUMN partition DROP DEFAULT;
ALTER TABLE second_buckets DROP CONSTRAINT second_buckets_pkey,
    ADD PRIMARY KEY (version, bucket, partition);

ALTER TABLE minute_buckets ADD COLUMN partition integer NOT NULL DEFAULT -1;
ALTER TABLE minute_buckets ALTER COLUMN partition DROP DEFAULT;
ALTER TABLE minute_buckets DROP CONSTRAINT minute_buckets_pkey,
    ADD PRIMARY KEY (version, bucket, partition);
