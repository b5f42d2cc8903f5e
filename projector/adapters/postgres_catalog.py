"""`PostgresVersionCatalog`: projection versions in PostgreSQL, behind the `VersionCatalog`
port: create or resume one, hold the active one still while a swap is decided, swap
atomically, drop a retired one, describe them all. Driver failures leave as `StoreUnavailable`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from projector.adapters.postgres_store import (
    NOTIFY,
    VERSION_OFFSETS,
    VERSION_TOTALS,
    totals_of,
    unavailable_on_failure,
)
from projector.errors import RebuildLockedError
from projector.ports import VersionInfo
from shared.projection import NOTIFY_CHANNEL, encode_position
from shared.totals import Totals

logger = logging.getLogger(__name__)

# Any fixed number: only one rebuild at a time, cluster-wide.
REBUILD_LOCK = 7_202_611_002
DATA_TABLES = (
    "partition_totals",
    "seen_transactions",
    "second_buckets",
    "minute_buckets",
    "poison_events",
    "transaction_conflicts",
)
DROP_CHUNK = 50_000
DESCRIBE_VERSIONS = """
SELECT v.version, v.state, v.until_spec, v.legacy_ids,
       coalesce(jsonb_object_agg(t.partition, t.next_offset)
                FILTER (WHERE t.partition IS NOT NULL), '{}') AS offsets,
       coalesce(jsonb_object_agg(t.partition, t.log_end_offset)
                FILTER (WHERE t.partition IS NOT NULL), '{}') AS log_end,
       coalesce(sum(t.tx_count), 0)::bigint AS count
FROM projection_versions v LEFT JOIN partition_totals t USING (version)
GROUP BY v.version ORDER BY v.version"""


class PostgresVersionCatalog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def rebuild_lock(self) -> AsyncIterator[None]:
        """Held on its own connection for the whole rebuild; released when it ends or dies."""
        with unavailable_on_failure():
            async with self._pool.acquire() as conn:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK):
                    raise RebuildLockedError("another rebuild is running (advisory lock held)")
                try:
                    yield
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK)

    async def active(self) -> int:
        with unavailable_on_failure():
            version: int = await self._pool.fetchval("SELECT version FROM projection_active")
        return version

    async def building(self, until: str | None) -> int | None:
        with unavailable_on_failure():
            version: int | None = await self._pool.fetchval(
                "SELECT max(version) FROM projection_versions"
                " WHERE state IN ('building', 'verified') AND until_spec IS NOT DISTINCT FROM $1",
                until,
            )
        return version

    async def create(self, until: str | None) -> int:
        with unavailable_on_failure():
            version: int = await self._pool.fetchval(
                "INSERT INTO projection_versions (version, state, until_spec)"
                " SELECT coalesce(max(version), 0) + 1, 'building', $1 FROM projection_versions"
                " RETURNING version",
                until,
            )
        return version

    async def offsets(self, version: int) -> dict[int, int]:
        with unavailable_on_failure():
            return _offsets(await self._pool.fetch(VERSION_OFFSETS, version))

    async def mark_verified(self, version: int) -> None:
        with unavailable_on_failure():
            await self._pool.execute(
                "UPDATE projection_versions SET state = 'verified' WHERE version = $1", version
            )

    @asynccontextmanager
    async def holding_active(self) -> AsyncIterator[PostgresActiveHold]:
        """A transaction holding the active version row FOR UPDATE: live batches wait (reads
        do not). Whatever the body does not `swap`, rolls back."""
        with unavailable_on_failure():
            async with self._pool.acquire() as conn, conn.transaction():
                active = await conn.fetchval("SELECT version FROM projection_active FOR UPDATE")
                yield PostgresActiveHold(conn, active)

    async def drop(self, version: int) -> None:
        """Delete a version's rows in chunks (never the active one)."""
        if version == await self.active():
            msg = f"refusing to drop the active version {version}"
            raise ValueError(msg)
        with unavailable_on_failure():
            for table in DATA_TABLES:
                while True:
                    deleted = await self._pool.execute(
                        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - fixed names
                        f" SELECT ctid FROM {table} WHERE version = $1 LIMIT {DROP_CHUNK}))",
                        version,
                    )
                    if deleted == "DELETE 0":
                        break
            await self._pool.execute("DELETE FROM projection_versions WHERE version = $1", version)
        logger.info("dropped projection version %d", version)

    async def describe(self) -> list[VersionInfo]:
        with unavailable_on_failure():
            rows = await self._pool.fetch(DESCRIBE_VERSIONS)
        return [
            VersionInfo(
                version=row["version"],
                state=row["state"],
                until=row["until_spec"],
                offsets=_int_map(row["offsets"]),
                log_end=_int_map(row["log_end"]),
                count=row["count"],
                legacy_ids=row["legacy_ids"],
            )
            for row in rows
        ]


def _offsets(rows: list[asyncpg.Record]) -> dict[int, int]:
    return {row["partition"]: row["next_offset"] for row in rows}


def _int_map(raw: Any) -> dict[int, int]:
    return {int(k): int(v) for k, v in json.loads(raw).items()}


class PostgresActiveHold:
    def __init__(self, conn: Any, active: int) -> None:
        self._conn = conn
        self.active = active

    async def offsets(self, version: int) -> dict[int, int]:
        return _offsets(await self._conn.fetch(VERSION_OFFSETS, version))

    async def totals(self, version: int) -> Totals:
        return totals_of(await self._conn.fetchrow(VERSION_TOTALS, version))

    async def swap(self, new: int) -> None:
        await self._conn.execute("UPDATE projection_active SET version = $1", new)
        await self._conn.execute(
            "UPDATE projection_versions SET state = 'retired' WHERE version = $1", self.active
        )
        await self._conn.execute(
            "UPDATE projection_versions SET state = 'active', activated_at = now()"
            " WHERE version = $1",
            new,
        )
        # Delivered on commit: readers waiting on a consistency token re-check at once.
        await self._conn.execute(
            NOTIFY, NOTIFY_CHANNEL, encode_position(new, await self.offsets(new))
        )
