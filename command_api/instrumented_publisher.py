"""An `EventPublisher` decorator that records what the wrapped publisher does in the
command API's metrics (accepted events, publish failures by reason, publish latency)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence

from command_api.metrics import CommandMetrics
from command_api.ports import EventPublisher, Position, PublishFailedError
from shared.events import TransactionRecorded


class InstrumentedPublisher:
    """An `EventPublisher` that counts what the wrapped one does."""

    def __init__(self, inner: EventPublisher, metrics: CommandMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        return await self._counted(self._inner.publish(events))

    async def publish_serialized(
        self, keys: Sequence[bytes], values: Sequence[bytes]
    ) -> list[Position]:
        return await self._counted(self._inner.publish_serialized(keys, values))

    async def _counted(self, publishing: Awaitable[list[Position]]) -> list[Position]:
        started = time.perf_counter()
        try:
            positions = await publishing
        except PublishFailedError as err:
            self._metrics.publish_failures.labels(err.reason).inc()
            raise
        self._metrics.publish_duration.observe(time.perf_counter() - started)
        self._metrics.accepted.inc(len(positions))
        return positions

    async def check_ready(self) -> None:
        await self._inner.check_ready()
