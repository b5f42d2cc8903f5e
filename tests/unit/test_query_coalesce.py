"""Coalesced all-time reads (query_api/stats/coalesce.py): concurrent `GET /stats` share one read,
but never one that began before a commit the process was told of, and nothing outlives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from query_api.config import QueryConfig
from query_api.deps import services_of
from query_api.main import create_app
from query_api.ports import ProjectionPosition, Snapshot
from query_api.position_board import PositionBoard
from query_api.stats.coalesce import StatsReadCoalescer
from shared.auth import SCOPE_READ, mint_token
from shared.settings import DatabaseSettings, JwtSettings, LogSettings, QuerySettings
from tests.doubles.memory_reader import InMemoryProjectionReader

NOW = 1_700_000_040.5
JWT = JwtSettings(secret=SecretStr("unit-test-secret-of-at-least-32-bytes!"))


class GatedReader(InMemoryProjectionReader):
    """All-time reads wait for `gate`, so that requests pile up behind one in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = 0

    async def all_time(self) -> Snapshot:
        self.started += 1
        await self.gate.wait()
        return await super().all_time()


@dataclass
class Served:
    client: httpx.AsyncClient
    board: PositionBoard
    app: FastAPI

    def joined(self) -> int:
        """Requests waiting for a read in flight (the app's middleware stack, once built)."""
        node: Any = self.app.middleware_stack
        while not isinstance(node, StatsReadCoalescer):
            node = node.app
        return node.joined


@asynccontextmanager
async def serve(reader: InMemoryProjectionReader, **query: Any) -> AsyncIterator[Served]:
    config = QueryConfig(
        database=DatabaseSettings(),
        jwt=JWT,
        query=QuerySettings(**query),
        log=LogSettings(),
        clock_skew_seconds=5,
    )
    app = create_app(config, reader=reader, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://query") as client,
    ):
        yield Served(client, services_of(app).board, app)


def gated() -> GatedReader:
    reader = GatedReader()
    reader.record(partition=0, amount=Decimal("10.00"), event_second=int(NOW))
    return reader


async def until(predicate: Any) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_concurrent_reads_share_one() -> None:
    reader = gated()
    async with serve(reader) as served:
        client = served.client
        requests = [
            asyncio.create_task(client.get("/stats", headers={"X-Request-ID": f"r{n}"}))
            for n in range(5)
        ]
        await until(lambda: reader.started == 1 and served.joined() == 4)
        reader.gate.set()
        responses = await asyncio.gather(*requests)
        metrics = (await client.get("/metrics")).text
    assert reader.started == 1
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert responses[0].json()["count"] == 1
    assert [r.headers["x-request-id"] for r in responses] == [f"r{n}" for n in range(5)]
    assert 'stats_requests_total{kind="all_time"} 5.0' in metrics
    assert 'route="/stats",status="200"} 5.0' in metrics


async def test_a_read_begun_before_a_notified_commit_is_not_shared() -> None:
    reader = gated()
    async with serve(reader) as served:
        client, board = served.client, served.board
        first = asyncio.create_task(client.get("/stats"))
        await until(lambda: reader.started == 1)
        board.observe(ProjectionPosition(1, {0: 2}))  # a commit was notified meanwhile
        reader.record(partition=0, amount=Decimal("5.00"), event_second=int(NOW))
        second = asyncio.create_task(client.get("/stats"))
        await until(lambda: reader.started == 2)
        reader.gate.set()
        responses = await asyncio.gather(first, second)
    assert reader.started == 2
    assert responses[1].json()["count"] == 2


async def test_nothing_is_kept_after_the_read() -> None:
    reader = gated()
    reader.gate.set()
    async with serve(reader) as served:
        client = served.client
        assert (await client.get("/stats")).json()["count"] == 1
        reader.record(partition=0, amount=Decimal("5.00"), event_second=int(NOW))
        assert (await client.get("/stats")).json()["count"] == 2
        reader.unavailable = True
        assert (await client.get("/stats")).status_code == 503
    assert reader.started == 3


async def test_joiners_get_the_leaders_failure_too() -> None:
    reader = gated()
    reader.unavailable = True
    async with serve(reader) as served:
        client = served.client
        requests = [asyncio.create_task(client.get("/stats")) for _ in range(3)]
        await until(lambda: reader.started == 1 and served.joined() == 2)
        reader.gate.set()
        responses = await asyncio.gather(*requests)
    assert reader.started == 1
    assert {r.status_code for r in responses} == {503}
    assert {r.headers["content-type"] for r in responses} == {"application/problem+json"}


async def test_reads_with_parameters_are_not_shared() -> None:
    reader = gated()
    async with serve(reader) as served:
        client = served.client
        requests = [
            asyncio.create_task(client.get("/stats", params={"wait_ms": 0})) for _ in range(3)
        ]
        await until(lambda: reader.started == 3)
        reader.gate.set()
        responses = await asyncio.gather(*requests)
    assert {r.status_code for r in responses} == {200}


async def test_protected_reads_are_not_shared() -> None:
    reader = gated()
    token = mint_token(JWT, subject="reader", scopes=[SCOPE_READ])
    async with serve(reader, stats_require_auth=True) as served:
        client = served.client
        headers = {"Authorization": f"Bearer {token}"}
        requests = [asyncio.create_task(client.get("/stats", headers=headers)) for _ in range(3)]
        await until(lambda: reader.started == 3)
        reader.gate.set()
        responses = await asyncio.gather(*requests)
    assert {r.status_code for r in responses} == {200}
