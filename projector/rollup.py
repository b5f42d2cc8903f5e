"""The roll-up: once commits no longer write them, the buckets of every partition merge into one
row per bucket (`ALL_PARTITIONS`), so a window read merges about one row per bucket, not one per
partition, however many partitions there are. Buckets are per partition so that projectors
folding different partitions never write the same row; the merged rows have one writer: each
projector process runs a roll-up, and the store lets one roll at a time.

It rolls only the buckets a window can read (the last hour) and only while the projection is
caught up: projectors folding a backlog write old buckets too, and would wait for the rows the
roll-up moves. Reads are exact either way: a bucket is the sum of its rows, merged or not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from projector.errors import StoreUnavailable
from projector.ports import ProjectionStore
from projector.retry import Pause, pause_unless_stopped
from shared.projection import LONGEST_WINDOW_SECONDS

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0
SEALED_AFTER_SECONDS = 60  # how old a bucket is when it is rolled up: commits are past it


class Rollup:
    def __init__(
        self,
        *,
        store: ProjectionStore,
        caught_up_within: int,
        clock: Callable[[], float] = time.time,
        pause: Pause = pause_unless_stopped,
    ) -> None:
        self._store = store
        self._caught_up_within = caught_up_within
        self._clock = clock
        self._pause = pause

    async def run(self, stop: asyncio.Event) -> None:
        """Roll up every `INTERVAL_SECONDS` until `stop` is set."""
        while not stop.is_set():
            await self._pause(stop, INTERVAL_SECONDS)
            if not stop.is_set():
                await self.roll_up()

    async def roll_up(self) -> int | None:
        """One round: the rows it moved, or None when it did not roll (behind, another
        roll-up under way, the store unavailable)."""
        try:
            version = await self._store.active_version()
            if await self._store.lag(version) > self._caught_up_within:
                return None
            before = math.floor(self._clock()) - SEALED_AFTER_SECONDS
            start = before - LONGEST_WINDOW_SECONDS
            return await self._store.roll_up(version, start=start, before=before)
        except StoreUnavailable as err:
            logger.info("bucket roll-up skipped: %r", err)
            return None
