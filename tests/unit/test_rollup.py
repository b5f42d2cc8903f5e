"""The bucket roll-up's policy over the in-memory store: it rolls the buckets of the last hour
that commits are past, only while the projection is caught up, and never stops on a store that
does not answer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from projector.batch import Batch
from projector.commit import commit
from projector.records import decode
from projector.rollup import SEALED_AFTER_SECONDS, Rollup
from shared.events import serialize
from shared.projection import ALL_PARTITIONS, LONGEST_WINDOW_SECONDS
from shared.totals import Totals
from tests.doubles.memory_store import InMemoryProjectionStore
from tests.unit.projector_kit import AT
from tests.unit.test_events import event

NOW = AT.timestamp() + 3 * SEALED_AFTER_SECONDS


async def fold(store: InMemoryProjectionStore, seconds_ago: list[float], *, log_end: int) -> None:
    """One event per partition, `seconds_ago` before NOW each, the log `log_end` long."""
    at = [AT + timedelta(seconds=NOW - AT.timestamp() - s) for s in seconds_ago]
    records = [
        decode(p, 0, serialize(event(transaction_id=f"t-{p}", occurred_at=moment)))
        for p, moment in enumerate(at)
    ]
    ends = {p: log_end for p in range(len(seconds_ago))}
    await commit(store, Batch(records, ends), version=1, live=True)


def rollup(store: InMemoryProjectionStore) -> Rollup:
    return Rollup(store=store, caught_up_within=10, clock=lambda: NOW)


async def test_sealed_buckets_of_the_last_hour_merge_and_the_rest_stay() -> None:
    store = InMemoryProjectionStore()
    sealed, fresh, old = (
        SEALED_AFTER_SECONDS + 1,
        5,
        LONGEST_WINDOW_SECONDS + SEALED_AFTER_SECONDS + 1,
    )
    await fold(store, [sealed, sealed, fresh, old], log_end=1)

    assert await rollup(store).roll_up() == 2 + 2  # two second rows, two minute rows

    seconds = store.versions[1].seconds
    assert sorted(p for p, _ in seconds) == [ALL_PARTITIONS, 2, 3]
    merged = next(totals for (p, _), totals in seconds.items() if p == ALL_PARTITIONS)
    assert merged == Totals(2, Decimal("24.60"), Decimal("12.30"), Decimal("12.30"))


async def test_nothing_rolls_while_the_projection_is_behind() -> None:
    store = InMemoryProjectionStore()
    await fold(store, [SEALED_AFTER_SECONDS + 1] * 2, log_end=50)
    assert await rollup(store).roll_up() is None
    assert all(p >= 0 for p, _ in store.versions[1].seconds)


async def test_it_runs_until_stopped() -> None:
    store = InMemoryProjectionStore()
    await fold(store, [SEALED_AFTER_SECONDS + 1] * 2, log_end=1)
    stop = asyncio.Event()
    waits: list[float] = []

    async def pause(_: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            stop.set()

    await Rollup(store=store, caught_up_within=0, clock=lambda: NOW, pause=pause).run(stop)
    assert len(waits) == 2
    assert [p for p, _ in store.versions[1].seconds] == [ALL_PARTITIONS]
