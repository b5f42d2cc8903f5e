"""Broker outage during ingest: producers post continuously to the real command API while the
private Kafka broker is stopped for ~10 s and started again; a real projector folds all along.

The contract under test: a POST answers 201 (durably in the log) or 503 problem+json within the
publish timeout; nothing else, no hang. A 503 means "not confirmed": the event may still land
once the broker is back, which is why the client retries it with the same transaction id until
a 201. In the end the projection counts every acknowledged id exactly once (nothing lost,
nothing doubled) and its sum, max and min are exact.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from tests.faults.harness import (
    PUBLISH_TIMEOUT_SECONDS,
    Deployment,
    projection,
    stack_async,
    totals_of,
)
from tests.faults.load import Ledger, producers, retry_until_acknowledged, wait_for_acks
from tests.faults.report import AddRow, Outcome
from tests.integration.command_support import end_offsets, read_all
from tests.integration.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = 10
MARGIN_SECONDS = 1.5  # scheduling slack on a busy 2-core machine (a JVM is starting)
PRODUCERS = 8
LIMIT = 6000  # transactions at most; the test also ends on time


async def test_broker_outage_loses_and_doubles_nothing(
    deployment: Deployment, report_row: AddRow
) -> None:
    api = deployment.command_api()
    projector = deployment.projector()
    await api.wait_ready()
    ledger = Ledger(seed=20261126, prefix="broker")
    stop = asyncio.Event()
    timeout = httpx.Timeout(PUBLISH_TIMEOUT_SECONDS + 10)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=api.url, timeout=timeout, limits=limits) as client:
        tasks = await producers(client, ledger, stop, count=PRODUCERS, limit=LIMIT, pause=0.03)
        try:
            await wait_for_acks(ledger, 200, since=0, timeout=30)
            before = len(ledger.attempts)
            await stack_async("kafka-down")
            down = time.monotonic()
            await asyncio.sleep(OUTAGE_SECONDS)
            await stack_async("kafka-up")
            outage = time.monotonic() - down
            during = len(ledger.attempts)
            await wait_for_acks(ledger, 300, since=during, timeout=90)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stack_async("kafka-up")  # whatever happened, the next test gets a broker

        first = ledger.first_attempts()
        assert {a.status for a in first} <= {201, 503}, Counter(a.status for a in first)
        for attempt in first:
            if attempt.status == 503:
                assert attempt.content_type == "application/problem+json"
                assert attempt.problem_type is not None
                assert attempt.problem_type.endswith("/event-log-unavailable")
                assert attempt.retry_after == "1"
        assert ledger.slowest() < PUBLISH_TIMEOUT_SECONDS + MARGIN_SECONDS
        statuses = Counter(a.status for a in first)
        assert statuses[503] > 0, "the outage did not reach a single request"
        assert ledger.statuses(since=before)[503] > 0
        assert ledger.statuses(since=during)[201] >= 300  # recovered without a restart

        refused = ledger.unacknowledged()
        await retry_until_acknowledged(client, ledger, refused, timeout=90)

    assert api.alive()
    expected = totals_of(ledger.acknowledged_amounts())
    assert expected[0] == len(ledger.amounts)  # every transaction is acknowledged by now

    ends = await end_offsets(deployment.kafka)

    async def folded_all() -> bool:
        return (await projection(deployment.database_url)).consumed >= sum(ends.values())

    await wait_until(folded_all, timeout=120)
    totals = await projection(deployment.database_url)
    assert (totals.count, totals.sum, totals.max, totals.min) == expected

    records = await read_all(deployment.kafka)
    keys = Counter(record.key.decode() for record in records)
    at = {(record.partition, record.offset): record.key.decode() for record in records}
    assert set(keys) == set(ledger.amounts)  # no event in the log that nobody sent
    for position, transaction_id in ledger.positions().items():
        assert at[position] == transaction_id  # a 201 named where the event really is
    assert projector.alive()

    retried = len(refused)
    landed_anyway = sum(1 for t in refused if keys[t] > 1)
    report_row(
        Outcome(
            fault=f"Kafka stopped {outage:.1f} s under continuous POSTs ({PRODUCERS} producers)",
            sent=len(ledger.amounts),
            acknowledged=statuses[201],
            not_confirmed=f"{statuses[503]:,} x 503 problem+json with `Retry-After` (slowest "
            f"answer {ledger.slowest():.2f} s for a {PUBLISH_TIMEOUT_SECONDS:g} s publish "
            f"timeout); {retried:,} retried with the same ids until 201, {landed_anyway:,} of "
            "them had landed anyway",
            counted=f"{totals.count:,} ({len(records):,} records in the log)",
        )
    )
