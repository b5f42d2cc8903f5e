"""What this process knows of the projection's progress, and the requests waiting on it.

One `ProgressBoard` per process. Reads and the LISTEN watcher (adapters/postgres_listener.py)
post what they learn; requests holding a consistency token wait here for the board to cover
it, without touching the database. A change wakes every waiter, each re-checks its own token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from query_api.ports import Progress
from shared.consistency import is_covered


class ProgressBoard:
    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._changed = asyncio.Event()
        self._waiting = 0
        self._generation = 0

    @property
    def progress(self) -> Progress | None:
        return self._progress

    @property
    def waiting(self) -> int:
        """Requests waiting right now (the watcher re-checks the database only for them)."""
        return self._waiting

    @property
    def generation(self) -> int:
        """Grows by one on every change (the stream broadcaster compares it)."""
        return self._generation

    async def changed(self) -> None:
        """Return at the next change of the progress."""
        await self._changed.wait()

    def observe(self, progress: Progress) -> None:
        """Merge a committed observation: within one version offsets only grow; another
        version (a rebuild was swapped in) replaces what we knew."""
        known = self._progress
        if known is None or known.version != progress.version:
            self._set(progress)
            return
        merged = dict(known.offsets)
        grew = False
        for partition, offset in progress.offsets.items():
            if offset > merged.get(partition, -1):
                merged[partition] = offset
                grew = True
        if grew:
            self._set(Progress(known.version, merged))

    def replace(self, progress: Progress) -> None:
        """Take `progress` as the truth even if it is behind what we knew."""
        self._set(progress)

    def covers(self, token: Mapping[int, int]) -> bool:
        return self._progress is not None and is_covered(token, self._progress.offsets)

    async def wait_until_covers(self, token: Mapping[int, int]) -> None:
        """Return as soon as the board covers `token` (bound it with `asyncio.timeout`)."""
        self._waiting += 1
        try:
            while not self.covers(token):
                await self._changed.wait()
        finally:
            self._waiting -= 1

    def _set(self, progress: Progress) -> None:
        self._progress = progress
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
