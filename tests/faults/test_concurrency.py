"""Concurrent POSTs against the real command API, broker, projector and query API: the same
transaction id posted 100 times at once counts once; 1,000 distinct ones at once count 1,000.
Read back through the query API, waiting on the consistency tokens the POSTs returned."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.consistency import decode_token, encode_token
from tests.faults.harness import Deployment, projection, transaction_body, writer_token
from tests.integration.command_support import read_all

pytestmark = pytest.mark.integration

NOW = "2026-01-01T00:00:00Z"


async def _deploy(deployment: Deployment) -> tuple[str, str]:
    command = deployment.command_api()
    deployment.projector()
    query = deployment.query_api()
    await command.wait_ready()
    await query.wait_ready()
    return command.url, query.url


async def _post_all(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {writer_token()}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        start = asyncio.Event()

        async def post(content: bytes) -> httpx.Response:
            await start.wait()  # all at once
            return await client.post("/transactions", content=content, headers=headers)

        tasks = [asyncio.create_task(post(content)) for content in bodies]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


def _merged_token(responses: list[httpx.Response]) -> str:
    highest: dict[int, int] = {}
    for response in responses:
        for partition, offset in decode_token(response.json()["consistency_token"]).items():
            highest[partition] = max(offset, highest.get(partition, -1))
    return encode_token(highest)


async def _stats_covering(url: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get(
            "/stats", params={"consistency_token": token, "wait_ms": 10_000}
        )
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


async def test_100_concurrent_posts_of_one_transaction_count_once(
    deployment: Deployment,
) -> None:
    command_url, query_url = await _deploy(deployment)
    body = transaction_body("same-id-1", Decimal("42.42"), NOW)
    responses = await _post_all(command_url, [body] * 100)

    assert Counter(r.status_code for r in responses) == {201: 100}
    assert {r.json()["transaction_id"] for r in responses} == {"same-id-1"}
    assert len({r.json()["event_id"] for r in responses}) == 100  # 100 events in the log
    assert len({r.json()["position"]["partition"] for r in responses}) == 1  # keyed by id
    stats = await _stats_covering(query_url, _merged_token(responses))
    assert (stats["count"], stats["sum"], stats["max"], stats["min"]) == (
        1,
        "42.42",
        "42.42",
        "42.42",
    )
    assert len(await read_all(deployment.kafka)) == 100
    totals = await projection(deployment.database_url)
    assert (totals.count, totals.consumed) == (1, 100)


async def test_1000_concurrent_distinct_posts_count_1000(deployment: Deployment) -> None:
    command_url, query_url = await _deploy(deployment)
    amounts = {f"distinct-{i:04d}": Decimal(i) + Decimal("0.01") for i in range(1000)}
    bodies = [transaction_body(t, a, NOW) for t, a in amounts.items()]
    responses = await _post_all(command_url, bodies)

    assert Counter(r.status_code for r in responses) == {201: 1000}
    assert {r.json()["transaction_id"] for r in responses} == set(amounts)
    positions = {
        (r.json()["position"]["partition"], r.json()["position"]["offset"]) for r in responses
    }
    assert len(positions) == 1000
    stats = await _stats_covering(query_url, _merged_token(responses))
    total = sum(amounts.values(), Decimal(0))
    assert stats["count"] == 1000
    assert stats["sum"] == f"{total:.2f}"
    assert (stats["max"], stats["min"]) == ("999.01", "0.01")
    totals = await projection(deployment.database_url)
    assert (totals.count, totals.sum, totals.consumed) == (1000, total, 1000)
