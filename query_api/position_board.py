"""What this process knows of the projection's position, and the requests waiting on it.

One `PositionBoard` per process. Reads and the LISTEN watcher (adapters/postgres_listener.py)
post what they learn; requests holding a consistency token wait here for the board to cover
it, without touching the database. A change wakes every waiter, each re-checks its own token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from query_api.ports import ProjectionPosition
from shared.consistency import is_covered


class PositionBoard:
    def __init__(self) -> None:
        self._position: ProjectionPosition | None = None
        self._changed = asyncio.Event()
        self._waiting = 0
        self._generation = 0

    @property
    def position(self) -> ProjectionPosition | None:
        return self._position

    @property
    def waiting(self) -> int:
        """Requests waiting right now (the watcher re-checks the database only for them)."""
        return self._waiting

    @property
    def generation(self) -> int:
        """Grows by one on every change (the stream broadcaster compares it)."""
        return self._generation

    async def changed(self) -> None:
        """Return at the next change of the position."""
        await self._changed.wait()

    def observe(self, position: ProjectionPosition) -> None:
        """Merge a committed observation: within one version offsets only grow; another
        version (a rebuild was swapped in) replaces what we knew."""
        known = self._position
        if known is None or known.version != position.version:
            self._set(position)
            return
        merged = dict(known.offsets)
        grew = False
        for partition, offset in position.offsets.items():
            if offset > merged.get(partition, -1):
                merged[partition] = offset
                grew = True
        if grew:
            self._set(ProjectionPosition(known.version, merged))

    def replace(self, position: ProjectionPosition) -> None:
        """Take `position` as the truth even if it is behind what we knew."""
        self._set(position)

    def covers(self, token: Mapping[int, int]) -> bool:
        return self._position is not None and is_covered(token, self._position.offsets)

    async def wait_until_covers(self, token: Mapping[int, int]) -> None:
        """Return as soon as the board covers `token` (bound it with `asyncio.timeout`)."""
        self._waiting += 1
        try:
            while not self.covers(token):
                await self._changed.wait()
        finally:
            self._waiting -= 1

    def _set(self, position: ProjectionPosition) -> None:
        self._position = position
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
