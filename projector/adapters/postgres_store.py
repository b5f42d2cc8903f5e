"""PostgreSQL `ProjectionStore`: one transaction per batch, set-based statements only.

Per batch: read the active version FOR SHARE (a swap waits for us, we wait for a swap), lock
the batch's partition rows FOR UPDATE (a second projector holding a stale assignment waits,
then finds its records already folded and skips them), insert the transaction ids
with their first occurrence (the ones it writes are new), fold only those; when the
batch repeats ids, compare the repeats with the stored occurrences and record conflicts;
store totals + buckets + poison + next offsets, and notify readers. Commit makes all of it
visible at once, or none of it.

The driver's failures leave as `StoreUnavailable`: the fold loop retries those.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg

from projector.batch import Batch, ConsumedRecord, FirstColumns, fresh_part
from projector.conflicts import Conflict, classify_repeats, first_occurrences
from projector.errors import StoreUnavailable, VersionChangedError
from projector.ports import CommitResult
from shared.projection import NOTIFY_CHANNEL, Occurrence, encode_position
from shared.totals import Totals

# InternalClientError: e.g. "cannot switch to state 15" when the server dies mid-statement
FAILURES = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

if TYPE_CHECKING:
    from shared.database import Connection

ACTIVE_VERSION = "SELECT version FROM projection_active"
LOCK_ACTIVE_VERSION = "SELECT version FROM projection_active FOR SHARE"
ENSURE_PARTITIONS = """
INSERT INTO partition_totals (version, partition)
SELECT $1, unnest($2::int[]) ON CONFLICT DO NOTHING"""
LOCK_PARTITIONS = """
SELECT partition, next_offset FROM partition_totals
WHERE version = $1 AND partition = ANY($2::int[]) ORDER BY partition FOR UPDATE"""
STORED_OFFSETS = """
SELECT partition, next_offset FROM partition_totals
WHERE version = $1 AND partition = ANY($2::int[])"""
VERSION_OFFSETS = "SELECT partition, next_offset FROM partition_totals WHERE version = $1"
# The first occurrence of each id of the batch reaches PostgreSQL by binary COPY into a
# temporary table (one per connection, emptied at every commit), then one INSERT ... SELECT.
# asyncpg checks every element of an array parameter in Python, while COPY encodes a row in
# C. The amount travels as its exact decimal text and the times as integer microseconds since
# the epoch (exact for every datetime, and cheaper to encode than through asyncpg's numeric
# and timestamptz encoders).
# ORDER BY: one lock order for every writer (sorted by PostgreSQL, cheaper than in Python).
CREATE_INCOMING = """
CREATE TEMPORARY TABLE IF NOT EXISTS incoming_occurrences (
    transaction_id text, partition integer, "offset" bigint, amount text,
    occurred_us bigint, recorded_us bigint, producer text
) ON COMMIT DELETE ROWS"""
# Ids are new almost always, so they are first inserted plainly, in a savepoint: ON CONFLICT's
# speculative insertion costs PostgreSQL more per row than a plain insert, and this insert is
# most of a commit. A unique violation rolls the savepoint back, and the same rows go again
# with ON CONFLICT DO NOTHING, returning the ids it wrote.
INSERT_NEW = """
INSERT INTO seen_transactions
    (version, transaction_id, partition, "offset", amount, occurred_at, recorded_at, producer)
SELECT $1, transaction_id, partition, "offset", amount::numeric,
       to_timestamp(occurred_us / 1000000) + occurred_us % 1000000 * interval '1 microsecond',
       to_timestamp(recorded_us / 1000000) + recorded_us % 1000000 * interval '1 microsecond',
       producer
FROM incoming_occurrences ORDER BY transaction_id"""
INSERT_SEEN = INSERT_NEW + "\nON CONFLICT DO NOTHING RETURNING transaction_id"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Only when a batch repeats ids: the counted occurrences to compare with, then the counts.
SEEN_OCCURRENCES = """
SELECT transaction_id, partition, "offset", amount, occurred_at, recorded_at, producer
FROM seen_transactions WHERE version = $1 AND transaction_id = ANY($2::text[])"""
COUNT_REPEATS = """
UPDATE seen_transactions AS s SET
    duplicates = s.duplicates + u.d, conflicts = s.conflicts + u.c
FROM unnest($2::text[], $3::int[], $4::int[]) AS u(transaction_id, d, c)
WHERE s.version = $1 AND s.transaction_id = u.transaction_id"""
INSERT_CONFLICTS = """
INSERT INTO transaction_conflicts
    (version, transaction_id, partition, "offset", amount, occurred_at, recorded_at, producer,
     first_partition, first_offset, first_amount, first_occurred_at, first_producer)
SELECT $1, u.* FROM unnest($2::text[], $3::int[], $4::bigint[], $5::numeric[],
                           $6::timestamptz[], $7::timestamptz[], $8::text[], $9::int[],
                           $10::bigint[], $11::numeric[], $12::timestamptz[], $13::text[]) AS u
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
UPSERT_BUCKETS = """
INSERT INTO {table} AS b (version, bucket, tx_count, tx_sum, tx_max, tx_min)
SELECT $1, u.* FROM unnest($2::bigint[], $3::bigint[], $4::numeric[], $5::numeric[],
                           $6::numeric[]) AS u
ON CONFLICT (version, bucket) DO UPDATE SET
    tx_count = b.tx_count + EXCLUDED.tx_count,
    tx_sum = b.tx_sum + EXCLUDED.tx_sum,
    tx_max = GREATEST(b.tx_max, EXCLUDED.tx_max),
    tx_min = LEAST(b.tx_min, EXCLUDED.tx_min)"""
UPSERT_SECONDS = UPSERT_BUCKETS.format(table="second_buckets")
UPSERT_MINUTES = UPSERT_BUCKETS.format(table="minute_buckets")
INSERT_POISON = """
INSERT INTO poison_events (version, partition, "offset", reason, payload)
SELECT $1, u.* FROM unnest($2::int[], $3::bigint[], $4::text[], $5::bytea[]) AS u
ON CONFLICT DO NOTHING"""
NOTIFY = "SELECT pg_notify($1, $2)"
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


def totals_of(row: Any) -> Totals:
    """A `VERSION_TOTALS` row."""
    return Totals(row["count"], row["sum"], row["max"], row["min"])


def _columns(
    rows: dict[int, Totals],
) -> tuple[list[int], list[int], list[Decimal], list[Decimal | None], list[Decimal | None]]:
    keys = sorted(rows)  # one lock order for every writer: no deadlocks between projectors
    return (
        keys,
        [rows[k].count for k in keys],
        [rows[k].sum for k in keys],
        [rows[k].max for k in keys],
        [rows[k].min for k in keys],
    )


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

    async def commit(self, version: int, batch: Batch, *, live: bool) -> CommitResult:
        with unavailable_on_failure():
            return await self._commit(version, batch, live=live)

    async def _commit(self, version: int, batch: Batch, *, live: bool) -> CommitResult:
        partitions = batch.partitions
        async with self._pool.acquire() as conn, conn.transaction():
            if live:
                active = await conn.fetchval(LOCK_ACTIVE_VERSION)
                if active != version:
                    raise VersionChangedError(active)
            await conn.execute(ENSURE_PARTITIONS, version, partitions)
            locked = await conn.fetch(LOCK_PARTITIONS, version, partitions)
            stored = {row["partition"]: row["next_offset"] for row in locked}
            fresh = fresh_part(batch, stored)
            first = fresh.first
            new_ids = await insert_first_occurrences(conn, version, first) if first else set()
            delta, folded = fresh.fold(new_ids)
            conflicts: tuple[Conflict, ...] = ()
            if len(folded) < len(fresh.events):  # repeats: rare, so off the hot path
                conflicts = await _record_repeats(conn, version, fresh.records, new_ids)

            next_offsets = batch.next_offsets()
            keys, counts, sums, maxes, mins = _columns(
                {p: delta.partitions.get(p, Totals()) for p in partitions}
            )
            await conn.execute(
                UPDATE_PARTITIONS,
                version,
                keys,
                [next_offsets[p] for p in keys],
                [batch.log_end_offsets.get(p, 0) for p in keys],
                counts,
                sums,
                maxes,
                mins,
            )
            if delta.seconds:
                await conn.execute(UPSERT_SECONDS, version, *_columns(delta.seconds))
                await conn.execute(UPSERT_MINUTES, version, *_columns(delta.minutes))
            poison = fresh.poison
            if poison:
                await conn.execute(
                    INSERT_POISON,
                    version,
                    [p for p, _, _ in poison],
                    [o for _, o, _ in poison],
                    [item.reason for _, _, item in poison],
                    [item.payload for _, _, item in poison],
                )
            if live:  # readers only read the active version
                await conn.execute(NOTIFY, NOTIFY_CHANNEL, encode_position(version, next_offsets))
        return CommitResult(
            folded=folded,
            duplicates=len(fresh.events) - len(folded),
            stale=fresh.stale,
            poison=tuple(poison),
            conflicts=conflicts,
        )


async def insert_first_occurrences(conn: Connection, version: int, first: FirstColumns) -> set[str]:
    """Store the first occurrence of every id not seen before; return those ids."""
    ids, partitions, offsets, amounts, occurred, recorded, producers = first
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
    try:
        async with conn.transaction():
            await conn.execute(INSERT_NEW, version)
        return set(ids)
    except asyncpg.UniqueViolationError:
        pass  # some were seen before
    return {row[0] for row in await conn.fetch(INSERT_SEEN, version)}


async def _record_repeats(
    conn: Connection, version: int, fresh: list[ConsumedRecord], new_ids: set[str]
) -> tuple[Conflict, ...]:
    """Classify the batch's repeated ids against their counted occurrences, add the counts
    to the seen rows and record the conflicts."""
    repeated = sorted({tx for tx in first_occurrences(fresh) if tx not in new_ids})
    stored: dict[str, Occurrence | None] = {}
    for row in await conn.fetch(SEEN_OCCURRENCES, version, repeated):
        stored[row["transaction_id"]] = (
            None
            if row["amount"] is None  # stored before payloads were kept
            else Occurrence(
                row["partition"],
                row["offset"],
                row["amount"],
                row["occurred_at"],
                row["recorded_at"],
                row["producer"],
            )
        )
    repeats = classify_repeats(fresh, new_ids, stored)
    ids = sorted(repeats.duplicates)
    await conn.execute(
        COUNT_REPEATS,
        version,
        ids,
        [repeats.duplicates[tx] for tx in ids],
        [repeats.conflict_counts.get(tx, 0) for tx in ids],
    )
    conflicts = repeats.conflicts
    if conflicts:
        firsts = [c.first for c in conflicts]
        again = [c.repeat for c in conflicts]
        await conn.execute(
            INSERT_CONFLICTS,
            version,
            [c.transaction_id for c in conflicts],
            [o.partition for o in again],
            [o.offset for o in again],
            [o.amount for o in again],
            [o.occurred_at for o in again],
            [o.recorded_at for o in again],
            [o.producer for o in again],
            [o.partition for o in firsts],
            [o.offset for o in firsts],
            [o.amount for o in firsts],
            [o.occurred_at for o in firsts],
            [o.producer for o in firsts],
        )
    return tuple(conflicts)
