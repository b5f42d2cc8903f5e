"""Offsets reported to the log's consumer group, for monitoring tools only (positions always
come from the store). One report at a time, never waited for by the fold; a report asked for
while one is in flight is sent when it ends, with the latest offsets: after a burst and a quiet
period the group's committed offsets equal the stored ones."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from projector.ports import RecordSource


class OffsetReporter:
    def __init__(self, source: RecordSource) -> None:
        self._source = source
        self._latest: Mapping[int, int] | None = None
        self._sending: asyncio.Task[None] | None = None

    def report(self, offsets: Mapping[int, int]) -> None:
        self._latest = offsets
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())

    async def finish(self) -> None:
        """Wait until the latest offsets are sent."""
        if self._sending is not None:
            await self._sending

    async def _send(self) -> None:
        while self._latest is not None:
            offsets, self._latest = self._latest, None
            await self._source.commit_offsets(offsets)
