"""What this process knows of the projection's position, and the requests waiting on it.

One `PositionBoard` per process. Reads and the LISTEN watcher (adapters/postgres_listener.py)
post what they learn; requests holding a consistency token wait here for the board to cover
it, without touching the database. A change wakes every waiter, each re-checks its own token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from query_api.errors import ConsistencyTimeoutError
from query_api.ports import ProjectionPosition, WaitOutcome
from shared.consistency import is_covered

T = TypeVar("T")


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

    async def read_covering(
        self,
        read: Callable[[], Awaitable[T]],
        position_of: Callable[[T], ProjectionPosition],
        token: Mapping[int, int],
        *,
        wait: float,
        waited: Callable[[WaitOutcome, float], None],
    ) -> T:
        """Read; while the result does not cover `token`, wait here (no database polling)
        and read again, for at most `wait` seconds. The answer always comes from a covering
        read; `waited` hears how it ended and after how long."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + wait
        while True:
            result = await read()
            position = position_of(result)
            if is_covered(token, position.offsets):
                self.observe(position)
                waited("hit", loop.time() - started)
                return result
            if self.covers(token):
                # The board is ahead of what we just read (a swap to a version that is
                # behind): the database is the truth.
                self.replace(position)
            else:
                self.observe(position)
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    await self.wait_until_covers(token)
            except TimeoutError as err:
                waited("timeout", loop.time() - started)
                msg = f"The projection did not reach the token's position within {wait:g} s."
                raise ConsistencyTimeoutError(msg) from err

    def _set(self, position: ProjectionPosition) -> None:
        self._position = position
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
