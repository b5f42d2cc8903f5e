"""The query API against a real PostgreSQL, through its composition root (ASGI, in process):
exact stats for seeded rows, read-your-writes released by NOTIFY, and an outage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from query_api.adapters.postgres_listener import PostgresPositionListener
from query_api.adapters.postgres_reader import PROGRESS_SQL
from query_api.config import QueryConfig
from query_api.deps import services_of
from query_api.main import create_app
from query_api.position_board import PositionBoard
from shared.settings import DatabaseSettings, JwtSettings, LogSettings, QuerySettings
from tests.scratch_database import ROLES, as_role

NOW = 1_700_000_070.5  # :30.5 of a minute
SECOND = int(NOW)


@asynccontextmanager
async def serve(
    database_url: str, *, recheck_seconds: float = 0.5, **query: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    config = QueryConfig(
        database=DatabaseSettings(
            database_url=SecretStr(as_role(database_url, ROLES.query)),
            database_pool_min=1,
            database_pool_max=4,
        ),
        jwt=JwtSettings(secret=SecretStr("integration-secret-of-at-least-32-bytes")),
        query=QuerySettings(**query),
        log=LogSettings(),
        clock_skew_seconds=5,
        progress_recheck_seconds=recheck_seconds,
    )
    app = create_app(config, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://query") as client,
    ):
        await asyncio.wait_for(listener_of(app).connected.wait(), 10)
        yield client, app


def listener_of(app: FastAPI) -> PostgresPositionListener:
    listener = services_of(app).listener
    assert listener is not None
    return listener


def board_of(app: FastAPI) -> PositionBoard:
    return services_of(app).board


async def seed_partition(
    pool: asyncpg.Pool,
    partition: int,
    *,
    next_offset: int,
    amounts: list[str],
    version: int = 1,
    log_end: int | None = None,
) -> None:
    values = [Decimal(a) for a in amounts]
    await pool.execute(
        "INSERT INTO partition_totals (version, partition, next_offset, log_end_offset,"
        " tx_count, tx_sum, tx_max, tx_min) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        version,
        partition,
        next_offset,
        next_offset if log_end is None else log_end,
        len(values),
        sum(values, Decimal(0)),
        max(values, default=None),
        min(values, default=None),
    )


async def seed_bucket(pool: asyncpg.Pool, table: str, bucket: int, amounts: list[str]) -> None:
    values = [Decimal(a) for a in amounts]
    await pool.execute(
        f"INSERT INTO {table} (version, bucket, partition, tx_count, tx_sum, tx_max, tx_min)"  # noqa: S608
        " VALUES (1, $1, 0, $2, $3, $4, $5)",
        bucket,
        len(values),
        sum(values, Decimal(0)),
        max(values),
        min(values),
    )


async def advance(
    pool: asyncpg.Pool, partition: int, next_offset: int, *, version: int = 1, notify: bool = True
) -> None:
    """What a projector batch does to one partition: move its offset (and notify), atomically."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE partition_totals SET next_offset = $3, tx_count = tx_count + 1,"
            " tx_sum = tx_sum + 1 WHERE version = $1 AND partition = $2",
            version,
            partition,
            next_offset,
        )
        if notify:
            payload = json.dumps({"version": version, "offsets": {str(partition): next_offset}})
            await conn.execute("SELECT pg_notify('projection_advanced', $1)", payload)


async def until(predicate: Any, *, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_stats_are_exact_for_seeded_rows(pg_pool: asyncpg.Pool, database_url: str) -> None:
    await seed_partition(pg_pool, 0, next_offset=3, amounts=["0.10", "0.20", "1000000000000.00"])
    await seed_partition(pg_pool, 1, next_offset=2, amounts=["0.01", "0.02"], log_end=9)
    await seed_partition(pg_pool, 2, next_offset=0, amounts=[])
    # the window (60 s at :30.5) starts at :31 of the previous minute
    await seed_bucket(pg_pool, "second_buckets", SECOND - 59, ["0.01", "0.02"])
    await seed_bucket(pg_pool, "second_buckets", SECOND - 60, ["0.10"])  # just outside
    await seed_bucket(pg_pool, "minute_buckets", SECOND // 60 - 1, ["0.10", "0.01", "0.02"])
    await seed_bucket(pg_pool, "minute_buckets", SECOND // 60, ["0.20", "1000000000000.00"])
    async with serve(database_url) as (client, _):
        all_time = (await client.get("/stats")).json()
        window = (await client.get("/stats", params={"window": 60})).json()
    assert {k: all_time[k] for k in ("count", "sum", "avg", "max", "min")} == {
        "count": 5,
        "sum": "1000000000000.33",
        "avg": "200000000000.07",  # 200000000000.066
        "max": "1000000000000.00",
        "min": "0.01",
    }
    assert all_time["as_of"]["offsets"] == {"0": 3, "1": 2, "2": 0}
    assert all_time["as_of"]["lag"] == {"0": 0, "1": 7, "2": 0}
    assert all_time["as_of"]["total_lag"] == 7
    assert all_time["as_of"]["version"] == 1
    assert {k: window[k] for k in ("count", "sum", "max", "min")} == {
        "count": 4,
        "sum": "1000000000000.23",
        "max": "1000000000000.00",
        "min": "0.01",
    }


async def test_a_notification_releases_a_waiting_request(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=10, amounts=["1.00"])
    await seed_partition(pg_pool, 4, next_offset=7, amounts=["2.00"])
    # With a 30 s safety re-check only the notification can release the request in time.
    async with serve(database_url, recheck_seconds=30) as (client, app):
        request = asyncio.create_task(
            client.get("/stats", params={"consistency_token": "v1.0-10.4-6", "wait_ms": 8000})
        )
        await until(lambda: board_of(app).waiting == 1)
        reloads = listener_of(app).reloads
        loop = asyncio.get_running_loop()
        notified = loop.time()
        await advance(pg_pool, 0, 11)
        response = await asyncio.wait_for(request, 5)
        released_after = loop.time() - notified
    assert response.status_code == 200, response.text
    assert response.json()["as_of"]["offsets"] == {"0": 11, "4": 7}
    assert response.json()["count"] == 3
    assert released_after < 1.0
    assert listener_of(app).reloads == reloads  # no database re-check was involved


async def test_a_missed_notification_is_caught_by_the_safety_recheck(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with serve(database_url, recheck_seconds=0.2) as (client, app):
        request = asyncio.create_task(
            client.get("/stats", params={"consistency_token": "v1.0-1", "wait_ms": 8000})
        )
        await until(lambda: board_of(app).waiting == 1)
        await advance(pg_pool, 0, 2, notify=False)
        response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert response.json()["as_of"]["offsets"] == {"0": 2}


async def test_a_version_swap_notification_reloads_every_offset(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    await seed_partition(pg_pool, 1, next_offset=1, amounts=["1.00"])
    await pg_pool.execute("INSERT INTO projection_versions (version, state) VALUES (2, 'building')")
    await seed_partition(pg_pool, 0, next_offset=5, amounts=["1.00"] * 5, version=2)
    await seed_partition(pg_pool, 1, next_offset=5, amounts=["1.00"] * 5, version=2)
    async with serve(database_url, recheck_seconds=30) as (client, app):
        request = asyncio.create_task(
            client.get("/stats", params={"consistency_token": "v1.0-3.1-3", "wait_ms": 8000})
        )
        await until(lambda: board_of(app).waiting == 1)
        async with pg_pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE projection_active SET version = 2")
            # the payload names one partition only: the listener must reload the rest
            await conn.execute(
                "SELECT pg_notify('projection_advanced', $1)",
                json.dumps({"version": 2, "offsets": {"0": 5}}),
            )
        response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["as_of"]["version"]) == (10, 2)


async def test_an_unreadable_notification_makes_the_listener_ask_the_database(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with serve(database_url, recheck_seconds=30) as (client, app):
        request = asyncio.create_task(
            client.get("/stats", params={"consistency_token": "v1.0-1", "wait_ms": 8000})
        )
        await until(lambda: board_of(app).waiting == 1)
        async with pg_pool.acquire() as conn, conn.transaction():
            await advance(pg_pool, 0, 2, notify=False)
            await conn.execute("SELECT pg_notify('projection_advanced', 'not json')")
        response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert response.json()["as_of"]["offsets"] == {"0": 2}


async def test_the_listeners_reload_reads_the_active_positions_and_no_row_without_one(
    pg_pool: asyncpg.Pool,
) -> None:
    await seed_partition(pg_pool, 3, next_offset=4, amounts=["1.00"])
    await seed_partition(pg_pool, 0, next_offset=2, amounts=["1.00"])
    await seed_partition(pg_pool, 0, next_offset=9, amounts=["1.00"], version=2)
    row = await pg_pool.fetchrow(PROGRESS_SQL)
    assert row is not None
    assert row["version"] == 1
    assert dict(zip(row["partitions"], row["next_offsets"], strict=True)) == {0: 2, 3: 4}
    await pg_pool.execute("DELETE FROM projection_active")
    assert await pg_pool.fetchrow(PROGRESS_SQL) is None  # the listener then keeps what it knew


async def test_a_token_not_reached_in_time_is_503(pg_pool: asyncpg.Pool, database_url: str) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with serve(database_url) as (client, _):
        response = await client.get(
            "/stats", params={"consistency_token": "v1.0-1", "wait_ms": 100}
        )
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert 'stats_consistency_waits_total{outcome="timeout"} 1.0' in metrics


@pytest.fixture
async def admin(admin_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(admin_database_url)
    yield conn
    await conn.close()


async def test_postgres_outage_is_503_and_heals_itself(
    pg_pool: asyncpg.Pool, database_url: str, admin: asyncpg.Connection[Any]
) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with serve(database_url) as (client, app):
        assert (await client.get("/stats")).status_code == 200
        # Down: no new connections, every open one (pool and LISTEN) killed.
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            response = await client.get("/stats")
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert "Traceback" not in response.text
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert [e["dependency"] for e in ready.json()["errors"]] == ["postgres"]
            await until(lambda: not listener_of(app).connected.is_set())
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        # Back: the next requests succeed without any restart, and LISTEN is re-established.
        async with asyncio.timeout(15):
            while (await client.get("/stats")).status_code != 200:
                await asyncio.sleep(0.1)
        assert (await client.get("/ready")).status_code == 200
        await asyncio.wait_for(listener_of(app).connected.wait(), 15)
        request = asyncio.create_task(
            client.get("/stats", params={"consistency_token": "v1.0-1", "wait_ms": 8000})
        )
        await until(lambda: board_of(app).waiting == 1)
        await advance(pg_pool, 0, 2)
        response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
