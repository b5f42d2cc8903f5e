"""The retry policy: after a transient failure (the store or the log does not answer), wait
0.1 s, doubling up to 5 s, unless stopping; a success resets the wait. Every retry is counted
by its reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from projector.errors import SourceUnavailable, StoreUnavailable
from projector.metrics import ProjectorMetrics

logger = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
TRANSIENT = (StoreUnavailable, SourceUnavailable)

Pause = Callable[[asyncio.Event, float], Awaitable[None]]
"""Wait `seconds` after a transient failure, or less when the stop event is set."""


async def pause_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Backoff:
    def __init__(self, metrics: ProjectorMetrics, pause: Pause = pause_unless_stopped) -> None:
        self._metrics = metrics
        self._pause = pause
        self._seconds = 0.0

    async def wait(self, err: BaseException, stop: asyncio.Event) -> None:
        """Back off after a transient failure, unless stopping."""
        self._seconds = min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, self._seconds * 2))
        logger.warning("%s; retrying in %.1f s", type(err).__name__, self._seconds)
        self.count(type(err).__name__)
        await self._pause(stop, self._seconds)

    def count(self, reason: str) -> None:
        """A batch retried at once (e.g. after a re-seek)."""
        self._metrics.retries.labels(reason).inc()

    def reset(self) -> None:
        self._seconds = 0.0
