"""Database outage during folding and reads: events keep arriving in the log and clients keep
reading stats while the private PostgreSQL is stopped for ~10 s and started again.

The query API must answer 503 problem+json (not hang, not 500) while the store is down and
recover by itself; the projector must retry with backoff, resume from the offsets stored in
PostgreSQL, and end with exact totals (count, sum, max, min), nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.events import TransactionRecorded, event_headers, serialize
from shared.settings import KafkaSettings
from tests.faults.harness import (
    PROBLEM_JSON,
    Deployment,
    Service,
    projection,
    stack_async,
    totals_of,
)
from tests.faults.report import AddRow, Outcome
from tests.integration.support import event, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = 10
READ_TIMEOUT_SECONDS = 5.0  # the query API's bound on one read (pool acquire included)
MARGIN_SECONDS = 1.5


@dataclass(frozen=True)
class Read:
    at: float
    status: int | None
    seconds: float
    content_type: str | None = None
    problem_type: str | None = None
    retry_after: str | None = None


async def publish_continuously(
    kafka: KafkaSettings,
    sent: list[TransactionRecorded],
    stop: asyncio.Event,
    *,
    limit: int,
    positions: list[tuple[int, int]] | None = None,
) -> None:
    """50 events every 0.1 s (1 in 25 a retried id), acks=all, until `stop` or `limit`;
    `positions` gets the (partition, offset) each one landed at, in `sent`'s order."""
    rng = random.Random(5)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        while not stop.is_set() and len(sent) < limit:
            chunk = []
            for _ in range(50):
                if sent and rng.random() < 0.04:
                    retried = rng.choice(sent).transaction_id
                    chunk.append(event("1.00", transaction_id=retried))
                else:
                    chunk.append(event(Decimal(rng.randint(1, 10**7)) / 100))
            acks = [
                await producer.send(kafka.topic, serialize(e), key=e.key, headers=event_headers())
                for e in chunk
            ]
            landed = await asyncio.gather(*acks)
            sent.extend(chunk)
            if positions is not None:
                positions.extend((ack.partition, ack.offset) for ack in landed)
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


async def read_continuously(url: str, reads: list[Read], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_SECONDS + 10) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = await client.get("/stats")
            except httpx.HTTPError:
                reads.append(Read(started, None, time.monotonic() - started))
                continue
            content_type = response.headers.get("content-type")
            problem = response.json() if content_type == PROBLEM_JSON else {}
            reads.append(
                Read(
                    started,
                    response.status_code,
                    time.monotonic() - started,
                    content_type,
                    problem.get("type"),
                    response.headers.get("retry-after"),
                )
            )
            await asyncio.sleep(0.05)


def ground_truth(sent: list[TransactionRecorded]) -> dict[str, Decimal]:
    first: dict[str, Decimal] = {}
    for e in sent:
        first.setdefault(e.transaction_id, e.amount)
    return first


async def test_database_outage_is_503_then_exact_totals(
    deployment: Deployment, report_row: AddRow
) -> None:
    projector = deployment.projector(http=True)
    query = deployment.query_api()
    await query.wait_ready()
    await projector.wait_ready(path="/health")
    sent: list[TransactionRecorded] = []
    reads: list[Read] = []
    stop_publishing, stop_reading = asyncio.Event(), asyncio.Event()
    publisher = asyncio.create_task(
        publish_continuously(deployment.kafka, sent, stop_publishing, limit=20_000)
    )
    readers = [
        asyncio.create_task(read_continuously(query.url, reads, stop_reading)) for _ in range(2)
    ]
    ready_while_down: httpx.Response | None = None
    try:
        await wait_until(
            lambda: _counted_at_least(deployment.database_url, 500), timeout=30, interval=0.2
        )
        retries_before = await retries(projector)
        await stack_async("pg-down")
        down_at = time.monotonic()
        async with httpx.AsyncClient(base_url=query.url, timeout=10) as client:
            await asyncio.sleep(1)
            ready_while_down = await client.get("/ready")
        await asyncio.sleep(OUTAGE_SECONDS - 1)
        restarting_at = time.monotonic()
        await stack_async("pg-up")
        up_at = time.monotonic()

        async def reads_again() -> bool:
            return any(r.at > up_at and r.status == 200 for r in reads)

        await wait_until(reads_again, timeout=30)
        recovered_at = time.monotonic()
        await asyncio.sleep(2)  # events keep arriving after the recovery, too
    finally:
        stop_publishing.set()
        await asyncio.gather(publisher, return_exceptions=True)
        await stack_async("pg-up")  # whatever happened, the next test gets a database

    expected = totals_of(ground_truth(sent))

    async def folded_all() -> bool:
        assert projector.alive(), projector.log()[-3000:]
        return (await projection(deployment.database_url)).consumed >= len(sent)

    await wait_until(folded_all, timeout=90, interval=0.2)
    stop_reading.set()
    await asyncio.gather(*readers)

    # While the store was down: 503 problem+json, quickly; never a 500, never a hang.
    statuses = Counter(r.status for r in reads)
    assert set(statuses) <= {200, 503}, statuses
    outage = [r for r in reads if down_at + 0.5 < r.at and r.at + r.seconds < restarting_at]
    assert outage, "no read happened during the outage"
    assert {r.status for r in outage} == {503}
    for r in reads:
        if r.status == 503:
            assert r.content_type == PROBLEM_JSON
            assert r.problem_type is not None
            assert r.problem_type.endswith("/projection-unavailable")
            assert r.retry_after == "1"
    assert max(r.seconds for r in reads) < READ_TIMEOUT_SECONDS + MARGIN_SECONDS
    assert ready_while_down is not None
    assert ready_while_down.status_code == 503
    assert ready_while_down.json()["errors"][0]["dependency"] == "postgres"

    # After it: exact totals, in the store and through the API.
    totals = await projection(deployment.database_url)
    assert (totals.count, totals.sum, totals.max, totals.min) == expected
    assert totals.consumed == len(sent)
    async with httpx.AsyncClient(base_url=query.url, timeout=10) as client:
        stats = (await client.get("/stats")).json()
    assert stats["count"] == expected[0]
    assert Decimal(stats["sum"]) == expected[1]
    assert projector.alive()
    # It got there by retrying through the outage (docs/exactly-once.md: transient errors are
    # retried with backoff, counted in projector_retries_total), not by a restart.
    assert await retries(projector) > retries_before
    report_row(
        Outcome(
            fault=f"PostgreSQL stopped {up_at - down_at:.1f} s while folding {len(sent):,} "
            f"events ({len(sent) - expected[0]:,} repeated ids) and reading",
            sent=None,
            acknowledged=None,
            not_confirmed=f"reads: {statuses[503]:,} x 503 problem+json while down, "
            f"{statuses[200]:,} x 200; 200 again {recovered_at - up_at:.1f} s after it is back "
            f"(slowest read {max(r.seconds for r in reads):.2f} s)",
            counted=f"{totals.count:,} (= distinct ids); sum, max, min exact",
        )
    )


async def retries(projector: Service) -> float:
    """`projector_retries_total`, summed over every reason, from the projector's /metrics."""
    async with httpx.AsyncClient(base_url=projector.url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("projector_retries_total{")
    )


async def _counted_at_least(database_url: str, count: int) -> bool:
    return (await projection(database_url)).count >= count
