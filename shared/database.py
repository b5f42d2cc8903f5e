"""PostgreSQL: the connection pool, the versioned, idempotent schema migrations, and the
privileges of the roles that use the schema.

Migrations are a one-shot step run by the schema's owner (`python -m projector migrate`);
the services connect with roles that cannot change the schema, and refuse to start on a
schema that misses a migration (`check_schema`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


class SchemaNotReadyError(Exception):
    """The database's schema is not the one this code was written for: it misses migrations
    (run `python -m projector migrate`), or has some this code does not know (a newer release
    migrated it: run that release)."""


@dataclass(frozen=True, slots=True)
class Roles:
    """Who else uses the schema: the projector (rows of every table) and the query API
    (reading them)."""

    projector: str
    query: str


def _quoted(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def _grants(roles: Roles, database: str) -> list[str]:
    """Idempotent. Default privileges cover the tables later migrations add (the owner creates
    them); `ALL TABLES` covers those made before. Nobody but the owner may create in the
    schema, and the migrations' own ledger is the owner's to write. The projector stages each
    commit in temporary tables of its own session (`projector/adapters/postgres_store.py`):
    it is granted TEMPORARY by name rather than through PUBLIC's default, which is revoked."""
    projector, query = _quoted(roles.projector), _quoted(roles.query)
    dml = "SELECT, INSERT, UPDATE, DELETE"
    future = "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT"
    return [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"REVOKE TEMPORARY ON DATABASE {_quoted(database)} FROM PUBLIC",
        f"GRANT TEMPORARY ON DATABASE {_quoted(database)} TO {projector}",
        f"GRANT USAGE ON SCHEMA public TO {projector}, {query}",
        f"GRANT {dml} ON ALL TABLES IN SCHEMA public TO {projector}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {projector}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {query}",
        f"{future} {dml} ON TABLES TO {projector}",
        f"{future} USAGE, SELECT ON SEQUENCES TO {projector}",
        f"{future} SELECT ON TABLES TO {query}",
        f"REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {projector}",
    ]


async def migrate(conn: Connection, roles: Roles | None = None) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction, then grant `roles`
    their privileges. Idempotent. Run by the schema's owner."""
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
        if roles is not None:
            database: str = await conn.fetchval("SELECT current_database()")
            async with conn.transaction():
                for statement in _grants(roles, database):
                    await conn.execute(statement)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def _applied_migrations(conn: Connection) -> dict[int, str]:
    """The migrations the database has applied, by number. Reads only."""
    ledger = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not ledger:
        return {}
    rows = await conn.fetch("SELECT version, name FROM schema_migrations")
    return {row["version"]: row["name"] for row in rows}


async def check_schema(conn: Connection) -> None:
    """Raise `SchemaNotReadyError` (naming them) unless the database has applied exactly the
    migrations this code has. A migration this code does not know may have changed what a
    table or a key means (as 005 did), so older code must not write or read by the old rules."""
    applied = await _applied_migrations(conn)
    known = {number for number, _, _ in _migrations()}
    unknown = [name for number, name in sorted(applied.items()) if number not in known]
    if unknown:
        msg = (
            f"the database has {len(unknown)} migration(s) this code does not know"
            f" ({', '.join(unknown)}): a newer release migrated it; run that release (or a"
            " newer one), never an older one"
        )
        raise SchemaNotReadyError(msg)
    pending = [name for number, name, _ in _migrations() if number not in applied]
    if pending:
        msg = (
            f"the database misses {len(pending)} migration(s) ({', '.join(pending)}): run"
            " `python -m projector migrate` with the schema owner's MIGRATION_DATABASE_URL first"
        )
        raise SchemaNotReadyError(msg)


async def ping(pool: asyncpg.Pool) -> None:
    await pool.fetchval("SELECT 1")
