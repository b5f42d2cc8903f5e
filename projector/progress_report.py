"""Rebuild progress on stderr: a bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

logger = logging.getLogger(__name__)

BAR_WIDTH = 30


def describe(done: int, total: int, rate: float) -> str:
    share = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
    remaining = max(0, total - done)
    eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
    return f"{done}/{total} offsets ({share:.1f}%), {rate:,.0f} events/s, ETA {eta}"


class ProgressReport:
    """Samples `position()` (offsets folded so far) against `total` while a fold runs."""

    def __init__(
        self,
        position: Callable[[], int],
        total: Callable[[], int],
        *,
        stream: TextIO = sys.stderr,
        interval: float | None = None,
    ) -> None:
        self._position = position
        self._total = total
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = interval if interval is not None else (0.5 if self._tty else 5.0)

    async def report(self) -> None:
        """Run until cancelled."""
        start_position, start_time = self._position(), time.monotonic()
        try:
            while True:
                await asyncio.sleep(self._interval)
                self._emit(start_position, start_time)
        finally:
            self._emit(start_position, start_time)
            if self._tty:
                self._stream.write("\n")

    def _emit(self, start_position: int, start_time: float) -> None:
        done, total = self._position(), self._total()
        elapsed = max(time.monotonic() - start_time, 1e-9)
        line = describe(done, total, (done - start_position) / elapsed)
        if self._tty:
            filled = 0 if total <= 0 else min(BAR_WIDTH, BAR_WIDTH * done // total)
            self._stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {line}")
            self._stream.flush()
        else:
            logger.info("rebuild progress: %s", line)
