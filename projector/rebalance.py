"""The fold loop's side of a consumer-group rebalance (the `RebalanceHandler` port): a batch in
flight commits (or fails) before its partitions move to another member, and partitions that
arrive are sought to their stored offsets before the next fetch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from projector.errors import SourceUnavailable, StoreUnavailable
from projector.positions import Positions

logger = logging.getLogger(__name__)


class Rebalancing:
    def __init__(self, positions: Positions, commit_lock: asyncio.Lock) -> None:
        self._positions = positions
        self._commit_lock = commit_lock

    async def partitions_revoked(self, partitions: Sequence[int]) -> None:
        async with self._commit_lock:  # the batch in flight commits (or fails) first
            logger.info("partitions revoked", extra={"partitions": sorted(partitions)})

    async def partitions_assigned(self, partitions: Sequence[int]) -> None:
        logger.info("partitions assigned", extra={"partitions": sorted(partitions)})
        try:
            await self._positions.seek_to_stored(partitions)
        except (StoreUnavailable, SourceUnavailable) as err:
            # The source reads from its default position then; the commit refuses what is
            # already folded (or a gap), and the loop re-seeks.
            logger.warning("could not seek to the stored offsets on assignment: %r", err)
