"""PostgreSQL `ProjectionStore`: a batch's commit is one transaction of set-based statements,
one `PostgresProjectionTransaction` step at a time (projector/commit.py sequences them).

Every row a commit writes belongs to the partitions it folds (their totals, their buckets, the
keys and conflicts of their records, their poison), so projectors folding other partitions
never write the same rows. Each writer locks its partitions' rows in partition order; a swap
waits for the active version row every live commit reads FOR SHARE.

The driver's failures leave as `StoreUnavailable` (the fold loop retries those), except an
error one value of the batch can cause (`REFUSED_VALUE_STATES`), which leaves as
`RecordRefusedError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import TYPE_CHECKING, Any

import asyncpg

from projector.conflicts import Repeats
from projector.errors import RecordRefusedError, StoreUnavailable
from projector.fold import Bucket, Delta, FirstColumns
from projector.ports import LockedPartitions
from projector.records import Poison
from shared.projection import (
    ALL_PARTITIONS,
    NOTIFY_CHANNEL,
    SECONDS_PER_MINUTE,
    Occurrence,
    TransactionKey,
    encode_position,
)
from shared.totals import Totals

# InternalClientError: e.g. "cannot switch to state 15" when the server dies mid-statement
FAILURES = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
# The errors one record's value can cause, whatever the rest of the batch: a string too long
# (22001), a number out of range (22003), a time PostgreSQL cannot read or hold (22007, 22008),
# a character the database cannot store (22021: not valid in its encoding; 22P05: none in it),
# a value too large for an index entry (54000). Never a constraint (class 23: NOT NULL, FK,
# CHECK are ours; our validation matches them, so their violation is a bug or a schema drift)
# nor any other data error: those leave as `StoreUnavailable`, loudly, instead of turning
# every record into poison (docs/reliability.md, "What is refused, and why").
REFUSED_VALUE_STATES = frozenset({"22001", "22003", "22007", "22008", "22021", "22P05", "54000"})

if TYPE_CHECKING:
    from shared.database import Connection

ACTIVE_VERSION = "SELECT version FROM projection_active"
LOCK_ACTIVE_VERSION = "SELECT version FROM projection_active FOR SHARE"
ENSURE_PARTITIONS = """
INSERT INTO partition_totals (version, partition)
SELECT $1, unnest($2::int[]) ON CONFLICT DO NOTHING"""
# The version's `legacy_ids` says whether keys stored before producers were recorded (producer
# '', migration 005) still claim their ids for every producer.
LOCK_PARTITIONS = """
SELECT partition, next_offset,
       coalesce((SELECT legacy_ids FROM projection_versions WHERE version = $1), false)
           AS legacy_ids
FROM partition_totals
WHERE version = $1 AND partition = ANY($2::int[]) ORDER BY partition FOR UPDATE"""
STORED_OFFSETS = """
SELECT partition, next_offset FROM partition_totals
WHERE version = $1 AND partition = ANY($2::int[])"""
VERSION_OFFSETS = "SELECT partition, next_offset FROM partition_totals WHERE version = $1"
# The first occurrence of each key of the batch reaches PostgreSQL by binary COPY into a
# temporary table (one per connection, emptied at every commit), then one INSERT ... SELECT.
# asyncpg checks every element of an array parameter in Python, while COPY encodes a row in
# C. The amount travels as its exact decimal text and the times as integer microseconds since
# the epoch (exact for every datetime, and cheaper to encode than through asyncpg's numeric
# and timestamptz encoders).
CREATE_INCOMING = """
CREATE TEMPORARY TABLE IF NOT EXISTS incoming_occurrences (
    transaction_id text, partition integer, "offset" bigint, amount text,
    occurred_us bigint, recorded_us bigint, producer text
) ON COMMIT DELETE ROWS"""
# Ids are new almost always, so they are first inserted plainly, in a savepoint: ON CONFLICT's
# speculative insertion costs PostgreSQL more per row than a plain insert, and this insert is
# most of a commit. A unique violation rolls the savepoint back, and the same rows go again
# with ON CONFLICT DO NOTHING, returning the keys it wrote.
INSERT_NEW = """
INSERT INTO seen_transactions
    (version, producer, transaction_id, partition, "offset", amount, occurred_at, recorded_at)
SELECT $1, producer, transaction_id, partition, "offset", amount::numeric,
       to_timestamp(occurred_us / 1000000) + occurred_us % 1000000 * interval '1 microsecond',
       to_timestamp(recorded_us / 1000000) + recorded_us % 1000000 * interval '1 microsecond'
FROM incoming_occurrences ORDER BY transaction_id, producer"""
INSERT_SEEN = INSERT_NEW + "\nON CONFLICT DO NOTHING RETURNING producer, transaction_id"
# Only in a version with legacy keys: the ids they claim are repeats, not new.
DROP_LEGACY_CLAIMED = """
DELETE FROM incoming_occurrences AS i USING seen_transactions AS s
WHERE s.version = $1 AND s.producer = '' AND s.transaction_id = i.transaction_id
RETURNING i.producer, i.transaction_id"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Only when a batch repeats keys: the counted occurrences to compare with, then the counts. A
# key's row, or the legacy row claiming its id (producer ''): at most one of them exists.
SEEN_OCCURRENCES = """
SELECT k.producer, k.transaction_id, s.partition, s."offset", s.amount, s.occurred_at,
       s.recorded_at
FROM unnest($2::text[], $3::text[]) AS k(producer, transaction_id)
JOIN seen_transactions AS s
  ON s.version = $1 AND s.producer IN (k.producer, '') AND s.transaction_id = k.transaction_id"""
# Summed per stored row first: the keys of several producers may land on one legacy row.
COUNT_REPEATS = """
UPDATE seen_transactions AS s SET
    duplicates = s.duplicates + u.d, conflicts = s.conflicts + u.c
FROM (SELECT r.producer, r.transaction_id, sum(k.d) AS d, sum(k.c) AS c
      FROM unnest($2::text[], $3::text[], $4::int[], $5::int[]) AS k(producer, transaction_id, d, c)
      JOIN seen_transactions AS r
        ON r.version = $1 AND r.producer IN (k.producer, '')
       AND r.transaction_id = k.transaction_id
      GROUP BY r.producer, r.transaction_id) AS u
WHERE s.version = $1 AND s.producer = u.producer AND s.transaction_id = u.transaction_id"""
INSERT_CONFLICTS = """
INSERT INTO transaction_conflicts
    (version, producer, transaction_id, partition, "offset", amount, occurred_at, recorded_at,
     first_partition, first_offset, first_amount, first_occurred_at, first_producer)
SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[], $6::numeric[],
                           $7::timestamptz[], $8::timestamptz[], $9::int[], $10::bigint[],
                           $11::numeric[], $12::timestamptz[], $13::text[]) AS u
ON CONFLICT DO NOTHING"""
UPDATE_PARTITIONS = """
UPDATE partition_totals AS t SET
    next_offset = GREATEST(t.next_offset, u.next_offset),
    log_end_offset = GREATEST(t.log_end_offset, u.log_end, u.next_offset),
    tx_count = t.tx_count + u.c,
    tx_sum = t.tx_sum + u.s,
    tx_max = GREATEST(t.tx_max, u.mx),
    tx_min = LEAST(t.tx_min, u.mn),
    updated_at = now()
FROM unnest($2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::numeric[],
            $7::numeric[], $8::numeric[]) AS u(partition, next_offset, log_end, c, s, mx, mn)
WHERE t.version = $1 AND t.partition = u.partition"""
# A batch's bucket rows (a second and a minute row per partition and bucket it folds) reach
# PostgreSQL by binary COPY too, amounts as exact text, then one upsert per table.
CREATE_INCOMING_BUCKETS = """
CREATE TEMPORARY TABLE IF NOT EXISTS incoming_buckets (
    minute boolean, bucket bigint, partition integer, tx_count bigint,
    tx_sum text, tx_max text, tx_min text
) ON COMMIT DELETE ROWS"""
UPSERT_BUCKETS = """
INSERT INTO {table} AS b (version, bucket, partition, tx_count, tx_sum, tx_max, tx_min)
SELECT $1, bucket, partition, tx_count, tx_sum::numeric, tx_max::numeric, tx_min::numeric
FROM incoming_buckets WHERE minute = {minute} ORDER BY bucket, partition
ON CONFLICT (version, bucket, partition) DO UPDATE SET
    tx_count = b.tx_count + EXCLUDED.tx_count,
    tx_sum = b.tx_sum + EXCLUDED.tx_sum,
    tx_max = GREATEST(b.tx_max, EXCLUDED.tx_max),
    tx_min = LEAST(b.tx_min, EXCLUDED.tx_min)"""
UPSERT_SECONDS = UPSERT_BUCKETS.format(table="second_buckets", minute="false")
UPSERT_MINUTES = UPSERT_BUCKETS.format(table="minute_buckets", minute="true")
INSERT_POISON = """
INSERT INTO poison_events (version, partition, "offset", reason, payload)
SELECT $1, u.* FROM unnest($2::int[], $3::bigint[], $4::text[], $5::bytea[]) AS u
ON CONFLICT DO NOTHING"""
NOTIFY = "SELECT pg_notify($1, $2)"
VERSION_LAG = """
SELECT coalesce(sum(GREATEST(0, log_end_offset - next_offset)), 0)::bigint
FROM partition_totals WHERE version = $1"""
# One roller at a time, cluster-wide (any fixed number): the merged rows have one writer.
ROLL_UP_LOCK = 7_202_611_003
TRY_ROLL_UP_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
# Moves the buckets of every partition in [$2, $3) into one row per bucket (partition $4).
# SKIP LOCKED: a row a commit is writing waits for the next round, so the roll-up never waits
# for a projector (and cannot deadlock with one).
ROLL_UP = """
WITH moved AS (
    DELETE FROM {table} AS b
    WHERE b.ctid = ANY(ARRAY(
        SELECT ctid FROM {table}
        WHERE version = $1 AND bucket >= $2 AND bucket < $3 AND partition >= 0
        FOR UPDATE SKIP LOCKED))
    RETURNING b.bucket, b.tx_count, b.tx_sum, b.tx_max, b.tx_min
), merged AS (
    INSERT INTO {table} AS r (version, bucket, partition, tx_count, tx_sum, tx_max, tx_min)
    SELECT $1, bucket, $4, sum(tx_count), sum(tx_sum), max(tx_max), min(tx_min)
    FROM moved GROUP BY bucket ORDER BY bucket
    ON CONFLICT (version, bucket, partition) DO UPDATE SET
        tx_count = r.tx_count + EXCLUDED.tx_count,
        tx_sum = r.tx_sum + EXCLUDED.tx_sum,
        tx_max = GREATEST(r.tx_max, EXCLUDED.tx_max),
        tx_min = LEAST(r.tx_min, EXCLUDED.tx_min)
)
SELECT count(*) FROM moved"""
ROLL_UP_SECONDS = ROLL_UP.format(table="second_buckets")
ROLL_UP_MINUTES = ROLL_UP.format(table="minute_buckets")
VERSION_TOTALS = """
SELECT coalesce(sum(tx_count), 0)::bigint AS count, coalesce(sum(tx_sum), 0) AS sum,
       max(tx_max) AS max, min(tx_min) AS min
FROM partition_totals WHERE version = $1"""


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Translate the driver's failures (a lost connection, a timeout, a server error)."""
    try:
        yield
    except FAILURES as err:
        raise StoreUnavailable(repr(err)) from err


@contextmanager
def refused_or_unavailable_on_failure() -> Iterator[None]:
    """As `unavailable_on_failure`, except that a value the server refuses
    (`REFUSED_VALUE_STATES`) is `RecordRefusedError`."""
    try:
        yield
    except asyncpg.PostgresError as err:
        state = err.sqlstate or ""
        if state in REFUSED_VALUE_STATES:
            raise RecordRefusedError(f"{state}: {err}") from err
        raise StoreUnavailable(repr(err)) from err
    except FAILURES as err:
        raise StoreUnavailable(repr(err)) from err


def totals_of(row: Any) -> Totals:
    """A `VERSION_TOTALS` row."""
    return Totals(row["count"], row["sum"], row["max"], row["min"])


def _totals_columns(
    rows: Mapping[Any, Totals], keys: Sequence[Any]
) -> tuple[list[int], list[Decimal], list[Decimal | None], list[Decimal | None]]:
    return (
        [rows[k].count for k in keys],
        [rows[k].sum for k in keys],
        [rows[k].max for k in keys],
        [rows[k].min for k in keys],
    )


def _bucket_rows(
    minute: bool, buckets: Mapping[Bucket, Totals]
) -> Iterator[tuple[bool, int, int, int, str, str, str]]:
    """`incoming_buckets` rows; amounts as exact text (str(Decimal) never rounds)."""
    for (partition, bucket), t in buckets.items():
        yield (minute, bucket, partition, t.count, str(t.sum), str(t.max), str(t.min))


class PostgresProjectionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def active_version(self) -> int:
        with unavailable_on_failure():
            version: int = await self._pool.fetchval(ACTIVE_VERSION)
        return version

    async def stored_offsets(self, version: int, partitions: Sequence[int]) -> dict[int, int]:
        with unavailable_on_failure():
            rows = await self._pool.fetch(STORED_OFFSETS, version, list(partitions))
        stored = {row["partition"]: row["next_offset"] for row in rows}
        return {partition: stored.get(partition, 0) for partition in partitions}

    async def totals(self, version: int) -> Totals:
        with unavailable_on_failure():
            return totals_of(await self._pool.fetchrow(VERSION_TOTALS, version))

    async def lag(self, version: int) -> int:
        with unavailable_on_failure():
            lag: int = await self._pool.fetchval(VERSION_LAG, version)
        return lag

    async def roll_up(self, version: int, *, start: int, before: int) -> int | None:
        with unavailable_on_failure():
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval(TRY_ROLL_UP_LOCK, ROLL_UP_LOCK):
                    return None
                seconds: int = await conn.fetchval(
                    ROLL_UP_SECONDS, version, start, before, ALL_PARTITIONS
                )
                minutes: int = await conn.fetchval(
                    ROLL_UP_MINUTES,
                    version,
                    start // SECONDS_PER_MINUTE,
                    before // SECONDS_PER_MINUTE,
                    ALL_PARTITIONS,
                )
        return seconds + minutes

    @asynccontextmanager
    async def transaction(self, version: int) -> AsyncIterator[PostgresProjectionTransaction]:
        with refused_or_unavailable_on_failure():
            async with self._pool.acquire() as conn, conn.transaction():
                yield PostgresProjectionTransaction(conn, version)


class PostgresProjectionTransaction:
    """The steps of a commit on one connection, inside its transaction."""

    def __init__(self, conn: Connection, version: int) -> None:
        self._conn = conn
        self._version = version

    async def active_version(self) -> int:
        version: int = await self._conn.fetchval(LOCK_ACTIVE_VERSION)
        return version

    async def lock_partitions(self, partitions: Sequence[int]) -> LockedPartitions:
        await self._conn.execute(ENSURE_PARTITIONS, self._version, partitions)
        locked = await self._conn.fetch(LOCK_PARTITIONS, self._version, partitions)
        return LockedPartitions(
            {row["partition"]: row["next_offset"] for row in locked},
            any(row["legacy_ids"] for row in locked),
        )

    async def insert_first_occurrences(
        self, first: FirstColumns, *, legacy_ids: bool
    ) -> set[TransactionKey]:
        ids, partitions, offsets, amounts, occurred, recorded, producers = first
        conn = self._conn
        await conn.execute(CREATE_INCOMING)
        rows = zip(
            ids,
            partitions,
            offsets,
            [str(amount) for amount in amounts],  # exact: str(Decimal) never rounds
            [(moment - _EPOCH) // _MICROSECOND for moment in occurred],
            [(moment - _EPOCH) // _MICROSECOND for moment in recorded],
            producers,
            strict=True,
        )
        await conn.copy_records_to_table("incoming_occurrences", records=rows)
        claimed: set[TransactionKey] = set()
        if legacy_ids:
            claimed = {(r[0], r[1]) for r in await conn.fetch(DROP_LEGACY_CLAIMED, self._version)}
        try:
            async with conn.transaction():
                await conn.execute(INSERT_NEW, self._version)
            return claimed
        except asyncpg.UniqueViolationError:
            pass  # some were seen before
        new = {(row[0], row[1]) for row in await conn.fetch(INSERT_SEEN, self._version)}
        return set(zip(producers, ids, strict=True)) - new

    async def counted_occurrences(
        self, keys: Sequence[TransactionKey]
    ) -> dict[TransactionKey, Occurrence | None]:
        rows = await self._conn.fetch(
            SEEN_OCCURRENCES, self._version, [k[0] for k in keys], [k[1] for k in keys]
        )
        counted: dict[TransactionKey, Occurrence | None] = {}
        for row in rows:
            key = (row["producer"], row["transaction_id"])
            counted[key] = (
                None  # stored before payloads were kept
                if row["amount"] is None
                else Occurrence(
                    row["partition"],
                    row["offset"],
                    row["amount"],
                    row["occurred_at"],
                    row["recorded_at"],
                    row["producer"],
                )
            )
        return counted

    async def record_repeats(self, repeats: Repeats) -> None:
        keys = sorted(repeats.duplicates)
        await self._conn.execute(
            COUNT_REPEATS,
            self._version,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [repeats.duplicates[k] for k in keys],
            [repeats.conflict_counts.get(k, 0) for k in keys],
        )
        conflicts = repeats.conflicts
        if not conflicts:
            return
        firsts = [c.first for c in conflicts]
        again = [c.repeat for c in conflicts]
        await self._conn.execute(
            INSERT_CONFLICTS,
            self._version,
            [o.producer for o in again],
            [c.transaction_id for c in conflicts],
            [o.partition for o in again],
            [o.offset for o in again],
            [o.amount for o in again],
            [o.occurred_at for o in again],
            [o.recorded_at for o in again],
            [o.partition for o in firsts],
            [o.offset for o in firsts],
            [o.amount for o in firsts],
            [o.occurred_at for o in firsts],
            [o.producer for o in firsts],
        )

    async def apply(
        self,
        delta: Delta,
        *,
        next_offsets: Mapping[int, int],
        log_end: Mapping[int, int],
        poison: Sequence[tuple[int, int, Poison]],
    ) -> None:
        conn, version = self._conn, self._version
        keys = sorted(next_offsets)  # one lock order for every writer
        partitions = {p: delta.partitions.get(p, Totals()) for p in keys}
        await conn.execute(
            UPDATE_PARTITIONS,
            version,
            keys,
            [next_offsets[p] for p in keys],
            [log_end.get(p, 0) for p in keys],
            *_totals_columns(partitions, keys),
        )
        if delta.seconds:
            await conn.execute(CREATE_INCOMING_BUCKETS)
            rows = chain(_bucket_rows(False, delta.seconds), _bucket_rows(True, delta.minutes))
            await conn.copy_records_to_table("incoming_buckets", records=rows)
            await conn.execute(UPSERT_SECONDS, version)
            await conn.execute(UPSERT_MINUTES, version)
        if poison:
            await conn.execute(
                INSERT_POISON,
                version,
                [p for p, _, _ in poison],
                [o for _, o, _ in poison],
                [item.reason for _, _, item in poison],
                [item.payload for _, _, item in poison],
            )

    async def notify(self, next_offsets: Mapping[int, int]) -> None:
        await self._conn.execute(
            NOTIFY, NOTIFY_CHANNEL, encode_position(self._version, next_offsets)
        )
