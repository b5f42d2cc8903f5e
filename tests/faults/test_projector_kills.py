"""Two projectors sharing a topic's partitions, each `kill -9`'d in turn while folding and
restarted, while events (with repeated ids and poison) keep arriving on every partition.

A kill lands while the victim folds a backlog (its stored offsets past where a burst began on
a partition it holds, short of the burst's end), so whatever it had fetched, folded or half
committed dies with it. Its partitions wait for the group to expel it (the session timeout),
then go to the survivor and the restarted process, which seek to the offsets stored in
PostgreSQL. The projection must end equal to the ground truth of what the broker acknowledged,
per partition (next offset, count, sum, max, min), with every repeat, conflict and poison
record where it is in the log; the test reports each kill's pause until every partition folds
again.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from decimal import Decimal

import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError

from shared.events import serialize
from shared.settings import KafkaSettings
from tests.faults.harness import Deployment, Service
from tests.faults.report import AddRow, Outcome
from tests.faults.test_database_outage import publish_continuously
from tests.faults.test_poison_events import POISON
from tests.faults.test_projector_scale_out import (
    PAUSE_LIMIT_SECONDS,
    Acknowledged,
    all_partitions_folding,
    assert_folded_exactly_once,
    held_partitions,
    holds_partitions,
    longest_stall,
    stored_offsets,
)
from tests.integration.support import event, group_members, publish_raw, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_BATCH = "100"  # many small commits: a kill finds the fold between fetch and commit
BURST = 20_000  # events on top of the steady stream, the backlog a victim is killed in
BURST_ATTEMPTS = 5  # bursts folded before the test could look are followed by another
POISON_VALUES = [value for value in POISON.values() if value is not None]


async def publish_burst(kafka: KafkaSettings, log: Acknowledged, rng: random.Random) -> None:
    """`BURST` new transactions with every kind of poison among them, recorded in `log`."""
    events = [event(Decimal(rng.randint(1, 10**7)) / 100) for _ in range(BURST)]
    poison = [(f"poison-{uuid.uuid4().hex}".encode(), value) for value in POISON_VALUES]
    landed = await publish_raw(kafka, [*((e.key, serialize(e)) for e in events), *poison])
    log.events.extend(events)
    log.positions.extend((ack.partition, ack.offset) for ack in landed[:BURST])
    log.poison.update((ack.partition, ack.offset) for ack in landed[BURST:])


async def kill_mid_fold(
    database_url: str, kafka: KafkaSettings, victim: Service, log: Acknowledged
) -> int:
    """Publish a burst and `kill -9` the victim while it folds it; returns how many records
    acknowledged on its partitions it left unfolded."""
    rng = random.Random(victim.name)
    held = held_partitions(victim)
    assert held, victim.log()[-3000:]
    for _ in range(BURST_ATTEMPTS):
        before = log.log_ends()
        await publish_burst(kafka, log, rng)
        after = log.log_ends()
        deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
        while time.monotonic() < deadline:
            stored = await stored_offsets(database_url)
            if any(before.get(p, 0) < stored.get(p, 0) < after.get(p, 0) for p in held):
                victim.kill()
                left = await stored_offsets(database_url)
                return sum(after.get(p, 0) - left.get(p, 0) for p in held)
            if all(stored.get(p, 0) >= after.get(p, 0) for p in held):
                break  # folded it between two looks: another burst
            assert victim.alive(), victim.log()[-3000:]
            await asyncio.sleep(0.02)
    msg = f"{victim.name} never caught folding a burst in {BURST_ATTEMPTS} attempts"
    raise AssertionError(msg)


async def test_two_projectors_killed_in_turn_while_folding(
    deployment: Deployment, report_row: AddRow
) -> None:
    group = f"kills-{uuid.uuid4().hex[:8]}"
    kafka, database_url = deployment.kafka, deployment.database_url
    partitions = kafka.partitions

    def projector(name: str) -> Service:
        return deployment.projector(group_id=group, name=name, PROJECTOR_MAX_BATCH=MAX_BATCH)

    async def split_between_two() -> bool:
        try:
            held = await group_members(kafka, group)
        except GroupCoordinatorNotAvailableError:  # a new broker creates its offsets topic
            return False
        return len(held) == 2 and all(held) and set.union(*held) == set(range(partitions))

    members = [projector("projector-1"), projector("projector-2")]
    log = Acknowledged()
    stop = asyncio.Event()
    publisher = asyncio.create_task(
        publish_continuously(kafka, log.events, stop, limit=10**6, positions=log.positions)
    )
    pauses: list[str] = []
    try:
        await wait_until(split_between_two, timeout=60, interval=0.2)
        await wait_until(lambda: all_partitions_folding(database_url, partitions), timeout=60)
        for turn in range(2):
            victim = members[turn]
            unfolded = await kill_mid_fold(database_url, kafka, victim, log)
            assert unfolded > 0, "killed too late: it had folded everything acknowledged"
            members[turn] = projector(f"{victim.name}-restarted")
            pause = await longest_stall(
                database_url, partitions, functools.partial(holds_partitions, members[turn])
            )
            await wait_until(split_between_two, timeout=30, interval=0.2)
            pauses.append(f"{victim.name}: {pause:.2f} s ({unfolded:,} records left unfolded)")
    finally:
        stop.set()
        await asyncio.gather(publisher, return_exceptions=True)

    totals = await assert_folded_exactly_once(database_url, log, members)
    report_row(
        Outcome(
            fault=f"two projectors sharing {partitions} partitions, each `kill -9`'d in turn "
            f"while folding a backlog and restarted; {len(log.events):,} events "
            f"({len(log.events) - totals.count:,} repeated ids) and {len(log.poison)} poison "
            "records arriving throughout",
            sent=None,
            acknowledged=None,
            not_confirmed="—",
            counted=f"{totals.count:,} (= distinct ids), exact per partition; repeats, "
            "conflicts and poison where they are in the log; pause from the kill until every "
            f"partition folds again: {', '.join(pauses)}",
        )
    )
