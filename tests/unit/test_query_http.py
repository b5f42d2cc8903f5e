"""The query API over HTTP (in process, ASGI) with the in-memory reader: shapes, 422s, 503s,
auth, metrics. No network, no database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from query_api.config import QueryConfig
from query_api.deps import services_of
from query_api.main import create_app
from query_api.ports import ProjectionPosition
from query_api.position_board import PositionBoard
from shared.auth import SCOPE_READ, SCOPE_WRITE, mint_token
from shared.settings import DatabaseSettings, JwtSettings, LogSettings, QuerySettings
from tests.doubles.memory_reader import InMemoryProjectionReader

NOW = 1_700_000_040.5
JWT = JwtSettings(secret=SecretStr("unit-test-secret-of-at-least-32-bytes!"))


def config(**query: Any) -> QueryConfig:
    return QueryConfig(
        database=DatabaseSettings(),
        jwt=JWT,
        query=QuerySettings(**query),
        log=LogSettings(),
        clock_skew_seconds=5,
    )


@asynccontextmanager
async def serve(
    reader: InMemoryProjectionReader, **query: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, PositionBoard]]:
    app = create_app(config(**query), reader=reader, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://query") as client,
    ):
        yield client, services_of(app).board


@pytest.fixture
def reader() -> InMemoryProjectionReader:
    reader = InMemoryProjectionReader()
    reader.record(partition=0, amount=Decimal("10.00"), event_second=int(NOW))
    reader.record(partition=1, amount=Decimal("0.25"), event_second=int(NOW) - 7200)
    reader.set_log_end(1, 4)
    return reader


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def test_all_time_stats_shape(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, _):
        response = await client.get("/stats", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"
    assert response.json() == {
        "count": 2,
        "sum": "10.25",
        "avg": "5.12",  # 5.125 -> 5.12
        "max": "10.00",
        "min": "0.25",
        "as_of": {
            "version": 1,
            "offsets": {"0": 1, "1": 1},
            "lag": {"0": 0, "1": 3},
            "total_lag": 3,
            "server_time": "2023-11-14T22:14:00.500000Z",
            "window": None,
        },
    }


async def test_empty_projection() -> None:
    async with serve(InMemoryProjectionReader()) as (client, _):
        body = (await client.get("/stats")).json()
    assert {k: body[k] for k in ("count", "sum", "avg", "max", "min")} == {
        "count": 0,
        "sum": "0.00",
        "avg": None,
        "max": None,
        "min": None,
    }


async def test_window_stats(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, _):
        body = (await client.get("/stats", params={"window": 60})).json()
    assert (body["count"], body["sum"], body["min"]) == (1, "10.00", "10.00")
    assert body["as_of"]["window"] == {
        "seconds": 60,
        "start": "2023-11-14T22:13:01Z",
        "end": "2023-11-14T22:15:00Z",
    }
    assert body["as_of"]["offsets"] == {"0": 1, "1": 1}


@pytest.mark.parametrize("waiting", [False, True], ids=["alone", "with-a-token-not-reached"])
@pytest.mark.parametrize("window", ["0", "-1", "3601", "abc", "1.5", ""])
async def test_window_out_of_range_is_422(
    reader: InMemoryProjectionReader, window: str, waiting: bool
) -> None:
    """Refused before any wait: the route's bounds are the window range's first check."""
    params = {"window": window}
    if waiting:
        params |= {"consistency_token": "v1.0-99", "wait_ms": "10000"}
    async with serve(reader) as (client, _), asyncio.timeout(5):
        response = await client.get("/stats", params=params)
    body = assert_problem(response, 422)
    assert [(e["location"], e["field"]) for e in body["errors"]] == [("query", "window")]


@pytest.mark.parametrize("wait_ms", ["-1", "10001", "soon"])
async def test_wait_ms_out_of_range_is_422(reader: InMemoryProjectionReader, wait_ms: str) -> None:
    async with serve(reader) as (client, _):
        response = await client.get(
            "/stats", params={"consistency_token": "v1.0-0", "wait_ms": wait_ms}
        )
    body = assert_problem(response, 422)
    assert [(e["location"], e["field"]) for e in body["errors"]] == [("query", "wait_ms")]


@pytest.mark.parametrize("token", ["v1", "v9.0-1", "v1.0-1.x", "v1.0--1", "a" * 40_000])
async def test_malformed_token_is_422(reader: InMemoryProjectionReader, token: str) -> None:
    async with serve(reader) as (client, _):
        response = await client.get("/stats", params={"consistency_token": token})
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["consistency_token"]
    assert "a" * 100 not in response.text  # a huge token is not echoed back


async def test_covered_token_answers_200(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, _):
        response = await client.get("/stats", params={"consistency_token": "v1.0-0.1-0"})
    assert response.status_code == 200
    assert response.json()["count"] == 2


async def test_token_released_by_progress(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, board):
        request = asyncio.create_task(
            client.get("/stats", params={"consistency_token": "v1.0-1", "wait_ms": "5000"})
        )
        async with asyncio.timeout(2):
            while board.waiting == 0:
                await asyncio.sleep(0)
        reader.record(partition=0, amount=Decimal("1.00"), event_second=int(NOW))
        board.observe(ProjectionPosition(1, {0: 2}))
        response = await asyncio.wait_for(request, 2)
    assert response.status_code == 200
    assert response.json()["count"] == 3


async def test_token_not_reached_is_503_with_retry_after(
    reader: InMemoryProjectionReader,
) -> None:
    async with serve(reader) as (client, _):
        response = await client.get(
            "/stats", params={"consistency_token": "v1.0-5", "wait_ms": "20"}
        )
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"


async def test_store_down_is_503_and_recovers(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, _):
        reader.unavailable = True
        response = await client.get("/stats")
        body = assert_problem(response, 503)
        assert "Traceback" not in response.text
        assert body["type"].endswith("projection-unavailable")
        assert response.headers["retry-after"] == "1"
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["errors"][0]["dependency"] == "postgres"
        reader.unavailable = False
        assert (await client.get("/stats")).status_code == 200
        assert (await client.get("/ready")).status_code == 200


async def test_metrics_count_kinds_and_waits(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, _):
        await client.get("/stats")
        await client.get("/stats", params={"window": 10})
        await client.get("/stats", params={"window": 10})
        await client.get("/stats", params={"consistency_token": "v1.0-0"})
        await client.get("/stats", params={"consistency_token": "v1.0-9", "wait_ms": 0})
        text = (await client.get("/metrics")).text
    assert 'stats_requests_total{kind="all_time"} 1.0' in text
    assert 'stats_requests_total{kind="window"} 2.0' in text
    assert 'stats_requests_total{kind="consistency"} 2.0' in text
    assert 'stats_consistency_waits_total{outcome="hit"} 1.0' in text
    assert 'stats_consistency_waits_total{outcome="timeout"} 1.0' in text


def bearer(scopes: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(JWT, subject='reader', scopes=scopes)}"}


Headers = Callable[[], dict[str, str]]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (lambda: {}, 401),
        (lambda: {"Authorization": "Bearer not-a-jwt"}, 401),
        (lambda: bearer([SCOPE_WRITE]), 403),
        (lambda: bearer([SCOPE_READ]), 200),
    ],
)
async def test_reads_can_require_the_read_scope(
    reader: InMemoryProjectionReader, headers: Headers, status: int
) -> None:
    async with serve(reader, stats_require_auth=True) as (client, _):
        response = await client.get("/stats", headers=headers())
        assert response.status_code == status
        assert (await client.get("/health")).status_code == 200  # operations stay open
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_reads_are_open_by_default(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, _):
        assert (await client.get("/stats")).status_code == 200


async def test_openapi_documents_every_error_as_problem_details(
    reader: InMemoryProjectionReader,
) -> None:
    async with serve(reader, stats_require_auth=True) as (client, _):
        spec = (await client.get("/openapi.json")).json()
    assert "ProblemDetails" in spec["components"]["schemas"]
    assert "FieldErrorDetail" in spec["components"]["schemas"]
    responses = spec["paths"]["/stats"]["get"]["responses"]
    assert {"401", "403", "422", "503"} <= responses.keys()
    # 400 is the HTTP server's own (a request line it refuses), in plain text, before any route
    assert responses["400"]["content"] == {"text/plain": {}}
    for status, response in responses.items():
        if int(status) < 400 or status == "400":
            continue
        schema = response["content"]["application/problem+json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ProblemDetails"}, status
