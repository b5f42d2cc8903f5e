"""PostgreSQL: the connection pool and the versioned, idempotent schema migrations."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.settings import DatabaseSettings

logger = logging.getLogger(__name__)

# Any fixed number: serialises concurrent migrators (several processes start together).
_MIGRATION_LOCK = 7_202_611_001


def new_pool(settings: DatabaseSettings) -> asyncpg.Pool:
    """A pool that has not connected yet: `async with pool` opens it, and closes it on exit.
    Build it in the event loop that will use it (asyncpg binds the pool to that loop)."""
    return asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        command_timeout=30,
    )


async def create_pool(settings: DatabaseSettings) -> asyncpg.Pool:
    pool = await new_pool(settings)
    assert pool is not None
    return pool


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("shared") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


async def migrate(conn: Connection) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction. Idempotent."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for number, name, sql in _migrations():
            if number in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name
                )
            logger.info("applied migration %s", name)
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def ping(pool: asyncpg.Pool) -> None:
    await pool.fetchval("SELECT 1")
