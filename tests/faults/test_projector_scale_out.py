"""Projector scale-out while folding: a second and a third projector join a running group,
then leave it again (SIGTERM), while events keep arriving on every partition.

Each join or leave is a rebalance: partitions move between members, and each new owner seeks
to the offsets stored in PostgreSQL. The totals must stay exact (count, sum, max, min over
distinct ids, with retried ids in the stream), and the test reports the pause: the time from a
member joining (or leaving) until every partition has folded again, measured as the longest any
partition went without advancing its stored offset while the group rebalanced.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from shared.events import TransactionRecorded
from tests.faults.harness import Deployment, Service, projection, totals_of
from tests.faults.report import AddRow, Outcome
from tests.faults.test_database_outage import ground_truth, publish_continuously
from tests.integration.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSE_LIMIT_SECONDS = 60  # the wait for partitions to fold again, not a speed assertion


async def stored_offsets(database_url: str) -> dict[int, int]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT partition, next_offset FROM partition_totals"
            " WHERE version = (SELECT version FROM projection_active)"
        )
    finally:
        await conn.close()
    return {row["partition"]: row["next_offset"] for row in rows}


async def longest_stall(database_url: str, partitions: int, settled: Callable[[], bool]) -> float:
    """Poll the stored offsets every 50 ms from now until `settled()` is true and then every
    partition has advanced once more; return the longest any partition went without advancing
    meanwhile (the rebalance's pause, plus at most one batch interval)."""
    last = await stored_offsets(database_url)
    started = time.monotonic()
    advanced = dict.fromkeys(range(partitions), started)
    longest = 0.0
    settled_at: float | None = None
    deadline = started + PAUSE_LIMIT_SECONDS
    while True:
        assert time.monotonic() < deadline, f"partitions still paused at {last}"
        now_offsets = await stored_offsets(database_url)
        now = time.monotonic()
        for partition in range(partitions):
            if now_offsets.get(partition, 0) > last.get(partition, 0):
                advanced[partition] = now
            longest = max(longest, now - advanced[partition])
        last = now_offsets
        if settled_at is None and settled():
            settled_at = now
        if settled_at is not None and all(t > settled_at for t in advanced.values()):
            return longest
        await asyncio.sleep(0.05)


async def test_projectors_join_and_leave_while_folding(
    deployment: Deployment, report_row: AddRow
) -> None:
    group = f"scale-{uuid.uuid4().hex[:8]}"
    partitions = deployment.kafka.partitions
    first = deployment.projector(group_id=group)
    sent: list[TransactionRecorded] = []
    stop = asyncio.Event()
    publisher = asyncio.create_task(
        publish_continuously(deployment.kafka, sent, stop, limit=60_000)
    )
    pauses: list[str] = []
    extra: list[Service] = []
    try:
        await wait_until(
            lambda: _all_partitions_folding(deployment.database_url, partitions), timeout=60
        )
        for number in (2, 3):
            member = deployment.projector(group_id=group, name=f"projector-{number}")
            extra.append(member)
            pause = await longest_stall(
                deployment.database_url, partitions, functools.partial(_assigned, member)
            )
            pauses.append(f"projector {number} joins: {pause:.2f} s")
        for member in reversed(extra):
            stopping = asyncio.create_task(asyncio.to_thread(member.stop))
            pause = await longest_stall(
                deployment.database_url, partitions, functools.partial(_gone, member)
            )
            await stopping
            pauses.append(f"a projector leaves: {pause:.2f} s")
    finally:
        stop.set()
        await asyncio.gather(publisher, return_exceptions=True)

    async def folded_all() -> bool:
        assert first.alive(), first.log()[-3000:]
        return (await projection(deployment.database_url)).consumed >= len(sent)

    await wait_until(folded_all, timeout=120, interval=0.2)
    totals = await projection(deployment.database_url)
    expected = totals_of(ground_truth(sent))
    assert (totals.count, totals.sum, totals.max, totals.min) == expected
    assert totals.consumed == len(sent)
    assert first.alive()
    assert not any(member.alive() for member in extra)
    report_row(
        Outcome(
            fault=f"projectors 2 and 3 join a folding group, then leave it (SIGTERM), "
            f"{len(sent):,} events ({len(sent) - expected[0]:,} repeated ids) arriving "
            "throughout",
            sent=None,
            acknowledged=None,
            not_confirmed="—",
            counted=f"{totals.count:,} (= distinct ids), exact; pause until every partition "
            f"folds again: {', '.join(pauses)}",
        )
    )


def _assigned(member: Service) -> bool:
    """The new member has partitions (its consumer logged the assignment)."""
    return "partitions assigned" in member.log()


def _gone(member: Service) -> bool:
    return not member.alive()


async def _all_partitions_folding(database_url: str, partitions: int) -> bool:
    return len(await stored_offsets(database_url)) == partitions
