"""A reused transaction id on the real stack: command API -> Kafka -> projector process ->
PostgreSQL -> query API. Within one producer the first occurrence stays counted and a
different payload is a recorded conflict (table, metric, GET /transactions/{id}); the same id
from another producer is a transaction of its own; a rebuild records the very same rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.auth import SCOPE_TRANSACTIONS_READ, SCOPE_WRITE
from tests.integration.command_support import free_port, running_app
from tests.integration.conftest import TopicFactory
from tests.integration.support import ProjectorProcess, query_client, wait_until
from tests.unit.command_kit import bearer, token

AT = "2026-11-26T12:00:00Z"
SHOP_A = bearer(token(subject="shop-a", scopes=f"{SCOPE_WRITE} {SCOPE_TRANSACTIONS_READ}"))
SHOP_B = bearer(token(subject="shop-b", scopes=f"{SCOPE_WRITE} {SCOPE_TRANSACTIONS_READ}"))

CONFLICT_ROWS = """
SELECT transaction_id, partition, "offset", amount, occurred_at, recorded_at, producer,
       first_partition, first_offset, first_amount, first_occurred_at, first_producer
FROM transaction_conflicts WHERE version = $1 ORDER BY transaction_id, partition, "offset" """
SEEN_ROWS = """
SELECT partition, "offset", amount, occurred_at, recorded_at, producer, duplicates, conflicts
FROM seen_transactions WHERE version = $1 AND transaction_id = $2 ORDER BY producer"""


async def post(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    response = await client.post(
        "/transactions", content=json.dumps({"timestamp": AT, **body}), headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def metric(port: int, name: str) -> float | None:
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def test_a_conflicting_repeat_is_recorded_and_rebuilt_the_same(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    tx = f"order-{uuid.uuid4().hex[:8]}"
    port = free_port()
    live = ProjectorProcess(
        kafka=kafka,
        database_url=database_url,
        group_id="live",
        log_path=tmp_path / "live.log",
        PROJECTOR_HTTP_PORT=str(port),
    ).start()
    try:
        async with running_app(kafka) as (_, command), query_client(database_url) as query:
            first = await post(command, {**SHOP_A, "Idempotency-Key": f'"{tx}"'}, amount="10.00")
            retry = await post(command, SHOP_A, amount="10.0", transaction_id=tx)
            other = await post(command, SHOP_A, amount="99.99", transaction_id=tx)
            theirs = await post(command, SHOP_B, amount="99.99", transaction_id=tx)
            assert first["transaction_id"] == retry["transaction_id"] == tx
            assert {first["position"]["partition"], other["position"]["partition"]} == {
                theirs["position"]["partition"]  # the key is the id: one partition
            }
            params = {"consistency_token": theirs["consistency_token"], "wait_ms": 10_000}
            answers: list[httpx.Response] = []

            async def covered() -> bool:  # 503 while the projector starts up
                answers.append(
                    await query.get(f"/transactions/{tx}", params=params, headers=SHOP_A)
                )
                return answers[-1].status_code != 503

            await wait_until(covered, timeout=60)
            answer = answers[-1]
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["state"], body["amount"], body["producer"]) == (
                "counted",
                "10.00",
                "shop-a",
            )
            assert (body["partition"], body["offset"]) == (
                first["position"]["partition"],
                first["position"]["offset"],
            )
            assert (body["duplicates"], body["conflicts"]) == (2, 1)
            [conflict] = body["conflicting"]
            assert (conflict["amount"], conflict["producer"], conflict["offset"]) == (
                "99.99",
                "shop-a",
                other["position"]["offset"],
            )
            stats = (await query.get("/stats")).json()
            assert (stats["count"], stats["sum"]) == (2, "109.99")
            own = await query.get(f"/transactions/{tx}", headers=SHOP_B)
            assert own.status_code == 200  # shop-b's id is shop-b's: counted, no conflict
            assert (own.json()["producer"], own.json()["amount"]) == ("shop-b", "99.99")
            assert (own.json()["duplicates"], own.json()["conflicting"]) == (0, [])

            async def conflicts_counted() -> bool:
                return await metric(port, "projector_conflicting_duplicates_total") == 1.0

            await wait_until(conflicts_counted, timeout=30)
            assert await metric(port, "projector_duplicate_events_total") == 2.0
    finally:
        live.stop()
    assert "conflicting duplicate transaction id" in (tmp_path / "live.log").read_text()

    old = await pg_pool.fetch(CONFLICT_ROWS, 1)
    assert len(old) == 1
    assert (old[0]["offset"], old[0]["first_offset"]) == (
        other["position"]["offset"],
        first["position"]["offset"],
    )
    rebuild = ProjectorProcess(
        kafka=kafka, database_url=database_url, group_id="live", log_path=tmp_path / "rb.log"
    ).start("rebuild", "--keep-old")
    assert await asyncio.to_thread(rebuild.wait, 300) == 0, (tmp_path / "rb.log").read_text()
    new = await pg_pool.fetchval("SELECT version FROM projection_active")
    assert new != 1
    assert await pg_pool.fetch(CONFLICT_ROWS, new) == old
    seen = await pg_pool.fetch(SEEN_ROWS, 1, tx)
    assert [row["producer"] for row in seen] == ["shop-a", "shop-b"]
    assert await pg_pool.fetch(SEEN_ROWS, new, tx) == seen


async def test_the_idempotency_key_header_paths(kafka_settings: TopicFactory) -> None:
    kafka = await kafka_settings()
    async with running_app(kafka) as (_, command):
        alone = await post(command, {**SHOP_A, "Idempotency-Key": '"k-1"'}, amount="1.00")
        equal = await post(
            command, {**SHOP_A, "Idempotency-Key": '"k-2"'}, amount="1.00", transaction_id="k-2"
        )
        different = await command.post(
            "/transactions",
            content=json.dumps({"amount": "1.00", "timestamp": AT, "transaction_id": "k-3"}),
            headers={**SHOP_A, "Idempotency-Key": '"k-4"'},
        )
    assert (alone["transaction_id"], equal["transaction_id"]) == ("k-1", "k-2")
    assert different.status_code == 422
    assert different.headers["content-type"] == "application/problem+json"
    assert different.json()["errors"][0]["field"] == "Idempotency-Key"
