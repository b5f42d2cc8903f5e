"""Unit-test kit for the projector: the fold loop over the in-memory source and store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import CollectorRegistry

from projector.loop import FoldLoop
from projector.metrics import ProjectorMetrics
from projector.positions import FoldTarget
from shared.events import TransactionRecorded, serialize
from tests.doubles.memory_source import InMemoryRecordSource
from tests.doubles.memory_store import InMemoryProjectionStore

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def event_bytes(amount: str, transaction_id: str | None = None, producer: str = "unit") -> bytes:
    return serialize(
        TransactionRecorded(
            event_id=uuid.uuid4(),
            transaction_id=transaction_id or uuid.uuid4().hex,
            amount=Decimal(amount),
            occurred_at=AT,
            recorded_at=AT,
            producer=producer,
        )
    )


@dataclass
class Pauses:
    """Stands in for the back-off wait: records each delay and returns at once."""

    seconds: list[float] = field(default_factory=list)

    async def __call__(self, stop: asyncio.Event, seconds: float) -> None:
        self.seconds.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Rig:
    source: InMemoryRecordSource
    store: InMemoryProjectionStore
    loop: FoldLoop
    metrics: ProjectorMetrics
    pauses: Pauses
    stop: asyncio.Event

    def write(self, partition: int, count: int, amount: str = "1.00") -> None:
        """Append `count` events of `amount` to a partition of the log."""
        for _ in range(count):
            self.source.append(partition, event_bytes(amount))

    def retries(self, reason: str) -> float:
        value: float = self.metrics.retries.labels(reason)._value.get()
        return value

    async def until(self, condition: Callable[[], bool]) -> None:
        """Let the loop run until `condition` holds (each turn yields to it)."""
        async with asyncio.timeout(10):
            while not condition():
                await asyncio.sleep(0)

    async def folded(self, version: int = 1) -> int:
        return (await self.store.totals(version)).count


def make_rig(
    *,
    partitions: int = 2,
    live: bool = True,
    version: int = 1,
    max_batch: int = 1000,
    poll_timeout_ms: int = 5,
) -> Rig:
    source = InMemoryRecordSource(partitions)
    store = InMemoryProjectionStore()
    metrics = ProjectorMetrics(CollectorRegistry())
    pauses = Pauses()
    loop = FoldLoop(
        source=source,
        store=store,
        topic="unit",
        target=FoldTarget(live=live, version=version),
        metrics=metrics,
        max_batch=max_batch,
        poll_timeout_ms=poll_timeout_ms,
        pause=pauses,
    )
    return Rig(source, store, loop, metrics, pauses, asyncio.Event())


@asynccontextmanager
async def running(rig: Rig, *, subscribe: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    """The loop running live as the one member of its group; stopped on the way out."""
    if subscribe:
        rig.source.subscribe(rig.loop.rebalancing)
    task = asyncio.create_task(rig.loop.run(rig.stop))
    try:
        yield task
    finally:
        rig.stop.set()
        rig.store.release_commits()
        rig.source.wake()
        await task


async def settle(rig: Rig, total: int) -> None:
    """Wait until `total` offsets are stored across partitions of the active version."""

    def done() -> bool:
        return sum(rig.store.versions[rig.store.active].offsets.values()) >= total

    await rig.until(done)
