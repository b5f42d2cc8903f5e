"""`PostgresPositionListener`: one per process, it keeps the `PositionBoard` current.

It holds a dedicated connection that LISTENs on `projection_advanced`; the projector notifies
in each batch transaction with `{"version": v, "offsets": {"<partition>": next_offset}}`,
delivered on commit. A notification for the version the board knows is merged into it (waking
the waiting requests); one for another version (a rebuild was swapped in) makes the listener
reload every offset of the active version from the database.

Safety net, per process rather than per request: every `recheck_seconds` while requests are
waiting (and every `probe_seconds` otherwise) it reloads the offsets over the same connection,
which catches a missed notification and proves the connection is alive. A dropped connection
is reopened with capped backoff, and reloaded at once since notifications sent meanwhile are
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from query_api.adapters.postgres_reader import PROGRESS_SQL, UNAVAILABLE_ERRORS
from query_api.ports import ProjectionPosition
from query_api.position_board import PositionBoard
from shared.projection import NOTIFY_CHANNEL, decode_position

logger = logging.getLogger(__name__)


def parse_payload(payload: str) -> ProjectionPosition | None:
    """The notification's payload, or None when it is not one we understand."""
    decoded = decode_position(payload)
    return None if decoded is None else ProjectionPosition(*decoded)


class PostgresPositionListener:
    def __init__(
        self,
        *,
        dsn: str,
        board: PositionBoard,
        recheck_seconds: float = 0.5,
        probe_seconds: float = 5.0,
        min_reload_gap_seconds: float = 0.1,
        connect_timeout_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._board = board
        self._recheck = recheck_seconds
        self._probe = probe_seconds
        self._reload_gap = min_reload_gap_seconds
        self._connect_timeout = connect_timeout_seconds
        self._max_backoff = max_backoff_seconds
        self._wake = asyncio.Event()
        self._reload_requested = False
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while LISTENing (tests wait on it)
        self.reloads = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="position-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
                conn.add_termination_listener(self._on_terminated)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notification)
                await self._reload(conn)  # whatever was notified while we were not listening
                self.connected.set()
                logger.info("listening for projection position")
                backoff = 0.1
                await self._serve(conn)
            except UNAVAILABLE_ERRORS as err:
                logger.warning("position listener connection failed: %s", type(err).__name__)
            except Exception:  # the one watcher must outlive any surprise
                logger.exception("position listener failed; reconnecting")
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(*UNAVAILABLE_ERRORS):
                        await conn.close(timeout=1)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _serve(self, conn: asyncpg.Connection[Any]) -> None:
        loop = asyncio.get_running_loop()
        last_reload = loop.time()
        tick = min(self._recheck, self._probe)
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            self._wake.clear()
            if conn.is_closed():
                return
            since = loop.time() - last_reload
            due = since >= (self._recheck if self._board.waiting else self._probe)
            if self._reload_requested or due:
                await asyncio.sleep(max(0.0, self._reload_gap - since))
                await self._reload(conn)
                last_reload = loop.time()

    async def _reload(self, conn: asyncpg.Connection[Any]) -> None:
        self._reload_requested = False
        row = await conn.fetchrow(PROGRESS_SQL, timeout=self._connect_timeout)
        self.reloads += 1
        if row is None:
            return
        offsets = dict(zip(row["partitions"], row["next_offsets"], strict=True))
        self._board.observe(ProjectionPosition(row["version"], offsets))

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        position = parse_payload(str(payload))
        known = self._board.position
        if position is not None and known is not None and position.version == known.version:
            self._board.observe(position)
            return
        if position is None:
            logger.warning("ignored a malformed %s notification", NOTIFY_CHANNEL)
        self._reload_requested = True  # another version, or unreadable: ask the database
        self._wake.set()

    def _on_terminated(self, _conn: Any) -> None:
        self._wake.set()
