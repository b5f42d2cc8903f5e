"""`StatsReadCoalescer`: concurrent all-time `GET /stats` requests share one read.

The parameterless all-time read is the hot path (dashboards poll it) and every one of them
asks the same question. While one such request (the leader) is reading the projection and
building its answer, requests that arrive meanwhile wait for that answer and send it too,
instead of each reading PostgreSQL and serializing the same document again. Nothing is kept
once the leader's answer is out: the next request reads afresh, so a database outage is seen
at once, exactly as without coalescing.

Freshness: a request joins only a read that began while the `PositionBoard` showed the same
position it shows now, i.e. no commit this process has been notified of (LISTEN, see
adapters/postgres_listener.py) happened between the read's start and the request's arrival.
So a shared answer is at most one read old, and never misses a commit a fresh read would have
been told of. Reads with a window, a consistency token or any query string, and reads that
require a token, are not coalesced.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query_api.ports import ProjectionPosition, StatsMetrics
from query_api.position_board import PositionBoard

STATS_PATH = "/stats"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    route: Any  # the matched route, so that latency metrics keep their label


@dataclass(frozen=True, slots=True)
class _Read:
    position: ProjectionPosition | None
    answer: asyncio.Future[_Answer | None]


class StatsReadCoalescer:
    def __init__(self, app: ASGIApp, *, board: PositionBoard, metrics: StatsMetrics) -> None:
        self.app = app
        self._board = board
        self._metrics = metrics
        self._in_flight: _Read | None = None
        self.joined = 0  # requests waiting for a shared read right now (tests wait on it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] != STATS_PATH
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        position = self._board.position
        read = self._in_flight
        if read is not None and read.position is position:
            # shield: a joiner that goes away must not cancel the answer the others wait for
            self.joined += 1
            try:
                answer = await asyncio.shield(read.answer)
            finally:
                self.joined -= 1
            if answer is not None:
                await self._send(answer, scope, send)
                return
            await self.app(scope, receive, send)  # the leader got no complete answer
            return
        await self._lead(scope, receive, send, position)

    async def _send(self, answer: _Answer, scope: Scope, send: Send) -> None:
        self._metrics.stats_request("all_time")
        if answer.route is not None:
            scope["route"] = answer.route
        start = {"type": "http.response.start", "status": answer.status}
        await send({**start, "headers": list(answer.headers)})
        await send({"type": "http.response.body", "body": answer.body})

    async def _lead(
        self, scope: Scope, receive: Receive, send: Send, position: ProjectionPosition | None
    ) -> None:
        """Answer through the app, and hand a complete answer to the requests that joined."""
        read = self._in_flight = _Read(position, asyncio.get_running_loop().create_future())
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        complete = False

        async def capture(message: Message) -> None:
            nonlocal status, headers, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                complete = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if self._in_flight is read:
                self._in_flight = None
            answer = _Answer(status, headers, b"".join(chunks), scope.get("route"))
            read.answer.set_result(answer if complete and status else None)
