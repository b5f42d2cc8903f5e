"""Read-your-writes: the one code path by which a read waits for a consistency token.

A request that holds the token of its write (the command API's 201 hands it out) is answered
only from a read that covers it. `accept` checks the token and the wait it asks for; `read`
reads, and while the result does not cover the token it waits on the process's
`PositionBoard` (woken by the LISTEN watcher, so waiting costs the database nothing) and
reads again, until the wait runs out. The stats and the transaction reads both go through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import WithJsonSchema

from query_api.errors import ConsistencyTimeoutError, InvalidQueryError
from query_api.ports import ProjectionPosition, StatsMetrics
from query_api.position_board import PositionBoard
from shared.consistency import TOKEN_PATTERN, InvalidConsistencyToken, decode_token, is_covered

T = TypeVar("T")

MAX_WAIT_MS = 10_000
MAX_TOKEN_LENGTH = 32_768  # bounds a token where it enters: a query parameter, Last-Event-ID
# The OpenAPI schema of a `consistency_token` query parameter: what `accept` takes.
TOKEN_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "maxLength": MAX_TOKEN_LENGTH,
        "pattern": TOKEN_PATTERN,
        "examples": ["v1.4-17", "v1.0-8.3-120"],
    }
)
# A request line longer than the HTTP server takes (a token of non-ASCII characters, each
# percent-encoded in up to 12 bytes) is refused by it, before any route, in plain text.
REQUEST_LINE_RESPONSE: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The HTTP server refused the request line (too long or malformed)",
        "content": {"text/plain": {}},
    }
}


@dataclass(frozen=True, slots=True)
class TokenWait:
    """An accepted consistency token, and how long a read may wait for it."""

    token: Mapping[int, int]
    seconds: float


class ConsistentReads:
    def __init__(
        self, *, board: PositionBoard, metrics: StatsMetrics, default_wait_ms: int
    ) -> None:
        self._board = board
        self._metrics = metrics
        self._default_wait_ms = default_wait_ms

    def accept(self, consistency_token: str, wait_ms: int | None) -> TokenWait:
        """The token and its wait (`wait_ms`, or the default), or a field error naming the
        one that is invalid (the token first)."""
        try:
            token = decode_token(consistency_token)
        except InvalidConsistencyToken as err:
            raise InvalidQueryError("consistency_token", str(err)) from err
        wait = self._default_wait_ms if wait_ms is None else wait_ms
        if not 0 <= wait <= MAX_WAIT_MS:
            raise InvalidQueryError("wait_ms", f"wait_ms must be 0..{MAX_WAIT_MS}")
        return TokenWait(token, wait / 1000)

    async def read(
        self,
        wait: TokenWait,
        read: Callable[[], Awaitable[T]],
        position_of: Callable[[T], ProjectionPosition],
    ) -> T:
        """Read; while the result does not cover the token, wait on the board (no database
        polling) and read again, for at most the accepted wait. The answer always comes from
        a covering read; the metrics hear how the wait ended and after how long."""
        board = self._board
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + wait.seconds
        while True:
            result = await read()
            position = position_of(result)
            if is_covered(wait.token, position.offsets):
                board.observe(position)
                self._metrics.consistency_wait("hit", loop.time() - started)
                return result
            if board.covers(wait.token):
                # The board is ahead of what we just read (a swap to a version that is
                # behind): the database is the truth.
                board.replace(position)
            else:
                board.observe(position)
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    await board.wait_until_covers(wait.token)
            except TimeoutError as err:
                self._metrics.consistency_wait("timeout", loop.time() - started)
                msg = (
                    f"The projection did not reach the token's position within {wait.seconds:g} s."
                )
                raise ConsistencyTimeoutError(msg) from err
