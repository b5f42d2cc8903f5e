"""Least privilege in PostgreSQL: the owner migrates (`python -m projector migrate`), the
projector's role changes rows and creates its own temporary tables and nothing else, the query
API's role reads and LISTENs and nothing else, tables a later migration adds are covered, and
no command but `migrate` ever changes the schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from query_api.config import QueryConfig
from query_api.main import create_app
from shared.database import SchemaNotReadyError
from shared.settings import DatabaseSettings, JwtSettings, LogSettings, QuerySettings
from tests.scratch_database import ROLES, as_role, create_database, drop_database, with_database
from tests.unit.command_kit import SECRET

ROOT = Path(__file__).resolve().parents[2]
TABLES = (
    "projection_versions",
    "projection_active",
    "partition_totals",
    "seen_transactions",
    "second_buckets",
    "minute_buckets",
    "poison_events",
    "transaction_conflicts",
)


async def connect(url: str) -> asyncpg.Connection[Any]:
    return await asyncpg.connect(url, timeout=10)


async def refused(conn: asyncpg.Connection[Any], sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(sql)


async def test_the_query_role_reads_and_listens_and_cannot_write(database_url: str) -> None:
    conn = await connect(as_role(database_url, ROLES.query))
    try:
        for table in TABLES:
            await conn.fetch(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608 - fixed names
        await conn.add_listener("projection_advanced", lambda *_: None)
        await refused(conn, "UPDATE projection_active SET version = version")
        await refused(conn, "INSERT INTO poison_events VALUES (1, 0, 0, 'x', NULL, now())")
        await refused(conn, "DELETE FROM partition_totals")
        await refused(conn, "TRUNCATE seen_transactions")
        await refused(conn, "CREATE TABLE intruder (x int)")
        await refused(conn, "DROP TABLE partition_totals")
        await refused(conn, "CREATE TEMPORARY TABLE intruder (x int)")
    finally:
        await conn.close()


async def test_the_projector_role_changes_rows_and_never_the_schema(database_url: str) -> None:
    conn = await connect(as_role(database_url, ROLES.projector))
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO partition_totals (version, partition) VALUES (1, 0)"
                " ON CONFLICT DO NOTHING"
            )
            await conn.execute("UPDATE partition_totals SET next_offset = 1 WHERE version = 1")
            await conn.execute("DELETE FROM second_buckets WHERE version = 1")
            # its own staging tables, granted by name (TEMPORARY), not through PUBLIC
            await conn.execute("CREATE TEMPORARY TABLE staging (x int) ON COMMIT DROP")
            for table in TABLES:
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608 - fixed names
        await refused(conn, "ALTER TABLE partition_totals ADD COLUMN intruder int")
        await refused(conn, "CREATE TABLE intruder (x int)")
        await refused(conn, "DROP TABLE poison_events")
        await refused(conn, "CREATE INDEX intruder ON seen_transactions (producer)")
        await refused(conn, "INSERT INTO schema_migrations (version, name) VALUES (999, 'x')")
        await refused(conn, "DELETE FROM schema_migrations")
    finally:
        await conn.close()


async def test_tables_a_later_migration_adds_are_granted_by_default(database_url: str) -> None:
    owner = await connect(database_url)
    try:
        await owner.execute("CREATE TABLE later_feature (id int PRIMARY KEY)")
    finally:
        await owner.close()
    projector = await connect(as_role(database_url, ROLES.projector))
    query = await connect(as_role(database_url, ROLES.query))
    try:
        await projector.execute("INSERT INTO later_feature VALUES (1)")
        assert await query.fetchval("SELECT id FROM later_feature") == 1
        await refused(query, "INSERT INTO later_feature VALUES (2)")
    finally:
        await projector.close()
        await query.close()


@pytest.fixture
async def empty_database(admin_database_url: str) -> AsyncIterator[str]:
    """A database nobody migrated yet (its URL as the owner)."""
    name = f"txstats_empty_{os.urandom(6).hex()}"
    admin = await connect(admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(admin_database_url, name)
    yield url
    await drop_database(admin_database_url, url)


async def tables_of(url: str) -> set[str]:
    conn = await connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


def _run(
    argv: list[str], base: Mapping[str, str], database_url: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**base, "DATABASE_URL": database_url, "LOG_FORMAT": "text", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def projector_cli(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "projector", *args], os.environ, database_url, env)


async def test_status_and_the_services_never_migrate_and_say_who_does(
    empty_database: str,
) -> None:
    status = await asyncio.to_thread(projector_cli, "status", database_url=empty_database)
    assert status.returncode == 6, status.stderr
    assert "python -m projector migrate" in status.stderr
    config = QueryConfig(
        database=DatabaseSettings(database_url=SecretStr(empty_database)),
        jwt=JwtSettings(secret=SecretStr(SECRET)),
        query=QuerySettings(),
        log=LogSettings(),
    )
    app = create_app(config)
    with pytest.raises(SchemaNotReadyError, match="python -m projector migrate"):
        async with app.router.lifespan_context(app):
            pass
    assert await tables_of(empty_database) == set()  # even as the owner, nothing was created


async def test_migrate_is_the_one_shot_step_and_grants_the_roles(empty_database: str) -> None:
    done = await asyncio.to_thread(
        projector_cli,
        "migrate",
        database_url="postgresql://nobody@127.0.0.1:1/none",  # MIGRATION_DATABASE_URL wins
        MIGRATION_DATABASE_URL=empty_database,
    )
    assert done.returncode == 0, done.stderr
    assert set(TABLES) <= await tables_of(empty_database)
    again = await asyncio.to_thread(projector_cli, "migrate", database_url=empty_database)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == '{"applied": []}'
    status = await asyncio.to_thread(
        projector_cli, "status", database_url=as_role(empty_database, ROLES.query)
    )
    assert status.returncode == 0, status.stderr  # read-only: the query role suffices


async def test_migrate_names_a_missing_role(empty_database: str) -> None:
    done = await asyncio.to_thread(
        projector_cli, "migrate", database_url=empty_database, MIGRATION_QUERY_ROLE="no_such_role"
    )
    assert done.returncode == 1
    assert "create the roles first" in done.stderr


async def test_scratch_databases_are_made_the_same_way(admin_database_url: str) -> None:
    url = await create_database(admin_database_url, "txstats_test")
    try:
        conn = await connect(as_role(url, ROLES.query))
        try:
            assert await conn.fetchval("SELECT version FROM projection_active") == 1
        finally:
            await conn.close()
    finally:
        await drop_database(admin_database_url, url)


def services_sh(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`scripts/services.sh` as `make` runs it, with only the owner's URL configured."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MIGRATION_DATABASE_URL", "PROJECTOR_DATABASE_URL", "QUERY_DATABASE_URL"}
    }
    return _run(["scripts/services.sh", *args], base, database_url, env)


async def test_make_status_reads_as_the_query_role_and_rebuild_runs_as_the_projectors(
    database_url: str,
) -> None:
    status = await asyncio.to_thread(services_sh, "projection-status", database_url=database_url)
    assert status.returncode == 0, status.stderr
    assert '"active_version": 1' in status.stdout
    # the roles are derived from the owner's URL: a role that does not exist shows which
    for command, setting in (
        (("projection-status",), "MIGRATION_QUERY_ROLE"),
        (("rebuild", "--abort"), "MIGRATION_PROJECTOR_ROLE"),
    ):
        refused = await asyncio.to_thread(
            services_sh, *command, database_url=database_url, **{setting: "txstats_nobody"}
        )
        assert refused.returncode != 0
        assert 'role "txstats_nobody" does not exist' in refused.stderr, refused.stderr
