"""The command API killed with SIGKILL mid-stream and started again (same port, no manual
step): every transaction it acknowledged before dying is in the log at the position its 201
named; requests in flight get no answer (never a 201 for an event that is not in the log);
the restarted API accepts again; retried with the same ids, everything is counted once."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.faults.harness import Deployment, projection, totals_of
from tests.faults.load import Ledger, producers, retry_until_acknowledged, wait_for_acks
from tests.faults.report import AddRow, Outcome
from tests.integration.command_support import end_offsets, read_all
from tests.integration.support import wait_until

pytestmark = pytest.mark.integration

PRODUCERS = 8
LIMIT = 5000


async def test_kill_9_of_the_command_api_loses_no_acknowledged_transaction(
    deployment: Deployment, report_row: AddRow
) -> None:
    api = deployment.command_api()
    projector = deployment.projector()
    await api.wait_ready()
    port = api.port
    ledger = Ledger(seed=99, prefix="restart")
    stop = asyncio.Event()
    timeout = httpx.Timeout(10.0)
    async with httpx.AsyncClient(base_url=api.url, timeout=timeout) as client:
        tasks = await producers(client, ledger, stop, count=PRODUCERS, limit=LIMIT, pause=0.005)
        try:
            await wait_for_acks(ledger, 400, since=0, timeout=30)
            api.kill()  # SIGKILL, mid-stream
            killed = len(ledger.attempts)
            acknowledged_before_kill = ledger.acknowledged()
            restarted = deployment.command_api(port=port)
            await restarted.wait_ready()
            await wait_for_acks(ledger, 400, since=killed, timeout=60)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        statuses = Counter(a.status for a in ledger.first_attempts())
        assert set(statuses) <= {201, None}, statuses  # None: the connection died with it
        assert statuses[None] > 0, "the kill did not interrupt a single request"
        assert ledger.statuses(since=killed)[201] >= 400  # the restarted API accepts

        refused = ledger.unacknowledged()
        await retry_until_acknowledged(client, ledger, refused, timeout=60)

    records = await read_all(deployment.kafka)
    at = {(record.partition, record.offset): record.key.decode() for record in records}
    keys = Counter(at.values())
    for position, transaction_id in ledger.positions().items():
        assert at.get(position) == transaction_id  # every 201 is in the log, where it said
    assert acknowledged_before_kill <= set(keys)
    assert set(keys) == set(ledger.amounts)

    ends = await end_offsets(deployment.kafka)

    async def folded_all() -> bool:
        return (await projection(deployment.database_url)).consumed >= sum(ends.values())

    await wait_until(folded_all, timeout=60)
    totals = await projection(deployment.database_url)
    expected = totals_of(ledger.acknowledged_amounts())
    assert expected[0] == len(ledger.amounts)
    assert (totals.count, totals.sum, totals.max, totals.min) == expected
    assert projector.alive()
    report_row(
        Outcome(
            fault="command API `kill -9` mid-stream, restarted",
            sent=len(ledger.amounts),
            acknowledged=statuses[201],
            not_confirmed=f"{statuses[None]:,} without an answer, retried after the restart "
            f"({sum(1 for t in refused if keys[t] > 1):,} had landed before the kill)",
            counted=f"{totals.count:,} ({len(records):,} records in the log; the "
            f"{len(acknowledged_before_kill):,} acknowledged before the kill all in it)",
        )
    )
