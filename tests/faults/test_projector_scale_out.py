"""Projector scale-out while folding: a second and a third projector join a running group,
then leave it again (SIGTERM), while events keep arriving on every partition.

Each join or leave is a rebalance: partitions move between members, and each new owner seeks
to the offsets stored in PostgreSQL. The projection must stay exact: per partition the next
offset, count, sum, max and min over distinct ids, and every retried id a repeat (a conflict:
its amount differs) at its position in the log. The test reports the pause: the time from a
member joining (or leaving) until every partition has folded again, measured as the longest any
partition went without advancing its stored offset while the group rebalanced.

The bookkeeping of what was acknowledged, its ground truth and the pause measurement serve the
kill -9 test too (tests/faults/test_projector_kills.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import pytest

from shared.events import TransactionRecorded
from tests.faults.harness import Deployment, Service, Totals, projection, totals_of
from tests.faults.report import AddRow, Outcome
from tests.faults.test_database_outage import ground_truth, publish_continuously
from tests.integration.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSE_LIMIT_SECONDS = 60  # the wait for partitions to fold again, not a speed assertion
Position = tuple[int, int]  # (partition, offset)


@dataclass
class Acknowledged:
    """What the broker acknowledged on a test's topic: each event with the position it landed
    at (`events[i]` at `positions[i]`), and the positions of the poison records."""

    events: list[TransactionRecorded] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    poison: set[Position] = field(default_factory=set)

    def log_ends(self) -> dict[int, int]:
        """Per partition, the offset after the last record acknowledged there."""
        ends: dict[int, int] = {}
        for partition, offset in [*self.positions, *self.poison]:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        return ends


@dataclass(frozen=True)
class PartitionFold:
    """One partition's row of the projection: its next offset and its totals."""

    next_offset: int
    totals: tuple[int, Decimal, Decimal | None, Decimal | None]  # count, sum, max, min


@dataclass(frozen=True)
class Folded:
    partitions: dict[int, PartitionFold]
    conflicts: set[Position]  # where each repeat with another payload landed
    duplicates: int  # every repeat, conflicting or not
    poison: set[Position]


def fold_truth(log: Acknowledged) -> Folded:
    """What an exactly-once fold of `log` holds: per partition the first occurrence of each id
    (the lowest offset: an id's events share a partition) counted, every later one a
    repeat, a conflict when its amount or event time differs."""
    first: dict[str, TransactionRecorded] = {}
    counted: dict[int, dict[str, Decimal]] = {}
    conflicts: set[Position] = set()
    duplicates = 0
    for position, sent in sorted(zip(log.positions, log.events, strict=True), key=lambda x: x[0]):
        earlier = first.setdefault(sent.transaction_id, sent)
        if earlier is sent:
            counted.setdefault(position[0], {})[sent.transaction_id] = sent.amount
            continue
        duplicates += 1
        if (sent.amount, sent.occurred_at) != (earlier.amount, earlier.occurred_at):
            conflicts.add(position)
    ends = log.log_ends()
    partitions = {
        partition: PartitionFold(end, totals_of(counted.get(partition, {})))
        for partition, end in ends.items()
    }
    return Folded(partitions, conflicts, duplicates, set(log.poison))


STORED_FOLD = {
    "partitions": "SELECT partition, next_offset, tx_count, tx_sum, tx_max, tx_min"
    " FROM partition_totals WHERE version = (SELECT version FROM projection_active)",
    "conflicts": 'SELECT partition, "offset" FROM transaction_conflicts'
    " WHERE version = (SELECT version FROM projection_active)",
    "duplicates": "SELECT coalesce(sum(duplicates), 0) FROM seen_transactions"
    " WHERE version = (SELECT version FROM projection_active)",
    "poison": 'SELECT partition, "offset" FROM poison_events'
    " WHERE version = (SELECT version FROM projection_active)",
}


async def stored_fold(database_url: str) -> Folded:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(STORED_FOLD["partitions"])
            conflicts = await conn.fetch(STORED_FOLD["conflicts"])
            duplicates = await conn.fetchval(STORED_FOLD["duplicates"])
            poison = await conn.fetch(STORED_FOLD["poison"])
    finally:
        await conn.close()
    return Folded(
        {
            row["partition"]: PartitionFold(
                row["next_offset"], (row["tx_count"], row["tx_sum"], row["tx_max"], row["tx_min"])
            )
            for row in rows
        },
        {(row["partition"], row["offset"]) for row in conflicts},
        duplicates,
        {(row["partition"], row["offset"]) for row in poison},
    )


async def assert_folded_exactly_once(
    database_url: str, log: Acknowledged, members: Sequence[Service]
) -> Totals:
    """Wait until every partition's stored offset is at the end of what was acknowledged on
    it (the `members` staying alive meanwhile), then hold the projection to the ground truth:
    per partition the next offset, count, sum, max and min; the repeats and conflicts at
    their positions; the poison at its positions. Returns the totals over all partitions."""
    expected = fold_truth(log)
    ends = log.log_ends()

    async def caught_up() -> bool:
        for member in members:
            assert member.alive(), member.log()[-3000:]
        return await stored_offsets(database_url) == ends

    await wait_until(caught_up, timeout=120, interval=0.2)
    assert await stored_fold(database_url) == expected
    totals = await projection(database_url)
    assert (totals.count, totals.sum, totals.max, totals.min) == totals_of(ground_truth(log.events))
    return totals


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
    log = Acknowledged()
    stop = asyncio.Event()
    publisher = asyncio.create_task(
        publish_continuously(
            deployment.kafka, log.events, stop, limit=60_000, positions=log.positions
        )
    )
    pauses: list[str] = []
    extra: list[Service] = []
    try:
        await wait_until(
            lambda: all_partitions_folding(deployment.database_url, partitions), timeout=60
        )
        for number in (2, 3):
            member = deployment.projector(group_id=group, name=f"projector-{number}")
            extra.append(member)
            pause = await longest_stall(
                deployment.database_url, partitions, functools.partial(holds_partitions, member)
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

    totals = await assert_folded_exactly_once(deployment.database_url, log, [first])
    assert not any(member.alive() for member in extra)
    report_row(
        Outcome(
            fault=f"projectors 2 and 3 join a folding group, then leave it (SIGTERM), "
            f"{len(log.events):,} events ({len(log.events) - totals.count:,} repeated ids) "
            "arriving throughout",
            sent=None,
            acknowledged=None,
            not_confirmed="—",
            counted=f"{totals.count:,} (= distinct ids), exact per partition, repeats and "
            "conflicts where they are in the log; pause until every partition folds again: "
            f"{', '.join(pauses)}",
        )
    )


def held_partitions(member: Service) -> list[int]:
    """The partitions `member` was given last, as its consumer logged the assignment."""
    held: list[int] = []
    for line in member.log().splitlines():
        if '"partitions assigned"' in line:
            held = json.loads(line)["partitions"]
    return held


def holds_partitions(member: Service) -> bool:
    """The new member has partitions (its consumer logged an assignment that is not empty)."""
    return bool(held_partitions(member))


def _gone(member: Service) -> bool:
    return not member.alive()


async def all_partitions_folding(database_url: str, partitions: int) -> bool:
    return len(await stored_offsets(database_url)) == partitions
