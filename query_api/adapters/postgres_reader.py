"""`PostgresProjectionReader`: each read is ONE statement over the active version.

A statement sees one snapshot, and every statement here resolves `projection_active` itself,
so a rebuild's version swap is seen atomically: all old rows or all new rows, never a mix.
Rows touched: all-time reads one `projection_active` row and at most one `partition_totals`
row per partition; a window reads those plus the bucket rows of its `BucketRange` through the
primary keys (version, bucket, partition): per bucket one row per partition, or the one the
projector's roll-up merged them into; a number bounded by the window's length and the
partitions whatever the volume (query_api/windows.py). asyncpg prepares and caches each
statement per connection.

The statements are composed once, at import, from this module's constant fragments (hence
the `noqa: S608`: no value ever enters the text, every one is a bound `$n` parameter); they
are public so the O(1) test EXPLAINs exactly what runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from query_api.errors import ProjectionUnavailableError
from query_api.ports import (
    MAX_LISTED_CONFLICTS,
    BucketRange,
    PartitionPosition,
    Snapshot,
    TransactionLookup,
    TransactionRecord,
)
from shared.projection import Occurrence
from shared.totals import Totals

logger = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT_SECONDS = 5.0

# `active` is exactly one row, estimated as one (projection_active is never ANALYZEd, so a
# plain join would be planned as if it held many rows) and read once by the whole statement.
_ACTIVE = "WITH active AS MATERIALIZED (SELECT (SELECT version FROM projection_active) AS version)"

_POSITIONS = (
    "coalesce(array_agg(t.partition ORDER BY t.partition), '{}') AS partitions",
    "coalesce(array_agg(t.next_offset ORDER BY t.partition), '{}') AS next_offsets",
    "coalesce(array_agg(t.log_end_offset ORDER BY t.partition), '{}') AS log_end_offsets",
)


def _over_partitions(*more: str) -> str:
    """The subquery every read joins to `active AS a`: the version's positions in partition
    order, and `more` aggregates over the same `partition_totals` rows `t`, in one pass."""
    columns = ",\n           ".join((*_POSITIONS, *more))
    return f"""
    SELECT {columns}
      FROM partition_totals AS t
     WHERE t.version = a.version"""  # noqa: S608


_TOTALS_AND_POSITIONS = _over_partitions(
    "coalesce(sum(t.tx_count), 0)::bigint AS tx_count",
    "coalesce(sum(t.tx_sum), 0) AS tx_sum",
    "max(t.tx_max) AS tx_max",
    "min(t.tx_min) AS tx_min",
)

ALL_TIME_SQL = f"""{_ACTIVE}
SELECT a.version, s.*
  FROM active AS a
 CROSS JOIN LATERAL ({_TOTALS_AND_POSITIONS}
 ) AS s"""  # noqa: S608

WINDOW_SQL = f"""{_ACTIVE}
SELECT a.version, w.*, p.*
  FROM active AS a
 CROSS JOIN LATERAL (
    SELECT coalesce(sum(b.tx_count), 0)::bigint AS tx_count,
           coalesce(sum(b.tx_sum), 0) AS tx_sum,
           max(b.tx_max) AS tx_max,
           min(b.tx_min) AS tx_min
      FROM (SELECT tx_count, tx_sum, tx_max, tx_min
              FROM second_buckets
             WHERE version = a.version AND bucket BETWEEN $1::bigint AND $2::bigint
            UNION ALL
            SELECT tx_count, tx_sum, tx_max, tx_min
              FROM minute_buckets
             WHERE version = a.version AND bucket BETWEEN $3::bigint AND $4::bigint) AS b
 ) AS w
 CROSS JOIN LATERAL ({_over_partitions()}
 ) AS p"""  # noqa: S608

# The listener's reload: the active version's positions; no row while there is none.
PROGRESS_SQL = f"""{_ACTIVE}
SELECT a.version, p.*
  FROM active AS a
 CROSS JOIN LATERAL ({_over_partitions()}
 ) AS p
 WHERE a.version IS NOT NULL"""  # noqa: S608

# One transaction, (producer $1, transaction_id $2): its seen row by primary key (version,
# producer, transaction_id), or the legacy row claiming the id (producer '', migration 005:
# at most one of the two exists); its conflicts by the prefix of theirs (at most
# MAX_LISTED_CONFLICTS listed); the version's positions.
TRANSACTION_SQL = f"""{_ACTIVE}
SELECT a.version, p.*, s.*, c.*
  FROM active AS a
 CROSS JOIN LATERAL ({_over_partitions()}
 ) AS p
  LEFT JOIN LATERAL (
    SELECT true AS found, x.partition, x."offset", x.amount, x.occurred_at, x.recorded_at,
           x.producer, x.duplicates, x.conflicts AS conflict_count
      FROM seen_transactions AS x
     WHERE x.version = a.version AND x.producer IN ($1, '') AND x.transaction_id = $2
     ORDER BY x.producer DESC LIMIT 1
 ) AS s ON true
 CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_agg(jsonb_build_array(k.partition, k."offset", k.amount::text,
                                                k.occurred_at, k.recorded_at, k.producer)
                              ORDER BY k.partition, k."offset"), '[]') AS conflicts
      FROM (SELECT * FROM transaction_conflicts
             WHERE version = a.version AND producer = $1 AND transaction_id = $2
             ORDER BY partition, "offset" LIMIT $3) AS k
 ) AS c"""  # noqa: S608

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. a connection the server killed mid-protocol
)
# The server dropped this pooled connection: the read is safe to repeat on a fresh one, once.
_RETRY_ONCE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,
)


def window_arguments(buckets: BucketRange) -> tuple[int, int, int, int]:
    """The parameters of `WINDOW_SQL` for a bucket range, in order."""
    return (buckets.first_second, buckets.last_second, buckets.first_minute, buckets.last_minute)


class PostgresProjectionReader:
    def __init__(
        self, pool: asyncpg.Pool, *, timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    ) -> None:
        self._pool = pool
        self._timeout = timeout_seconds

    async def all_time(self) -> Snapshot:
        row = await self._fetchrow(ALL_TIME_SQL)
        return _snapshot(row)

    async def window(self, buckets: BucketRange) -> Snapshot:
        row = await self._fetchrow(WINDOW_SQL, *window_arguments(buckets))
        return _snapshot(row)

    async def ping(self) -> None:
        await self._fetchrow("SELECT 1")

    async def transaction(self, producer: str, transaction_id: str) -> TransactionLookup:
        row = await self._fetchrow(TRANSACTION_SQL, producer, transaction_id, MAX_LISTED_CONFLICTS)
        if row is None or row["version"] is None:
            return TransactionLookup(0, None)
        return TransactionLookup(row["version"], _record(transaction_id, row), _positions(row))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """One statement on a pooled connection, bounded in time (acquire included). A
        connection the server dropped is retried once on a fresh one; any other failure is
        `ProjectionUnavailableError`."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                    return await conn.fetchrow(sql, *args)
            except _RETRY_ONCE as err:
                if attempt == 2:
                    raise _unavailable(err) from err
                logger.info("retrying a read on a fresh connection: %s", type(err).__name__)
            except UNAVAILABLE_ERRORS as err:
                raise _unavailable(err) from err
        raise AssertionError("unreachable")


def _unavailable(err: BaseException) -> ProjectionUnavailableError:
    sqlstate = getattr(err, "sqlstate", None)
    logger.warning("projection read failed: %s", type(err).__name__, extra={"sqlstate": sqlstate})
    return ProjectionUnavailableError("The statistics store is unavailable.")


def _snapshot(row: asyncpg.Record | None) -> Snapshot:
    if row is None or row["version"] is None:  # no active version: an empty projection
        return Snapshot(0, Totals())
    totals = Totals(
        count=int(row["tx_count"]),
        sum=Decimal(row["tx_sum"]),
        max=row["tx_max"],
        min=row["tx_min"],
    )
    return Snapshot(row["version"], totals, _positions(row))


def _positions(row: asyncpg.Record) -> tuple[PartitionPosition, ...]:
    partitions: Sequence[int] = row["partitions"]
    return tuple(
        PartitionPosition(p, n, e)
        for p, n, e in zip(partitions, row["next_offsets"], row["log_end_offsets"], strict=True)
    )


def _record(transaction_id: str, row: asyncpg.Record) -> TransactionRecord | None:
    if not row["found"]:
        return None
    counted = (
        None  # stored before payloads and producers were kept (migration 003)
        if row["amount"] is None
        else Occurrence(
            partition=row["partition"],
            offset=row["offset"],
            amount=row["amount"],
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
            producer=row["producer"],
        )
    )
    conflicts = tuple(
        Occurrence(
            partition=partition,
            offset=offset,
            amount=Decimal(amount),
            occurred_at=datetime.fromisoformat(occurred_at),
            recorded_at=datetime.fromisoformat(recorded_at),
            producer=producer,
        )
        for partition, offset, amount, occurred_at, recorded_at, producer in json.loads(
            row["conflicts"]
        )
    )
    return TransactionRecord(
        transaction_id=transaction_id,
        counted=counted,
        duplicates=row["duplicates"],
        conflict_count=row["conflict_count"],
        conflicts=conflicts,
    )
