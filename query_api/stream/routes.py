"""HTTP edge of the stats stream: `GET /stats/stream`, Server-Sent Events.

The framing, the heartbeat comments, the send timeout and closing streams when uvicorn shuts
down come from sse-starlette (`EventSourceResponse`); what is sent comes from the process's one
`StatsBroadcaster` (query_api/stream/broadcaster.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from query_api.consistency import MAX_TOKEN_LENGTH
from query_api.deps import provider
from query_api.stream.broadcaster import (
    ClientStreamsExceededError,
    StatsBroadcaster,
    StreamFullError,
    Subscription,
    WindowNotStreamedError,
)
from query_api.windows import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS
from shared.errors import Problem
from shared.settings import DEFAULT_STREAM_WINDOWS

MAX_STREAM_WINDOWS = 8

STREAM_FULL = Problem(503, "stream-full", "Too many streams", {"Retry-After": "5"})
CLIENT_STREAMS_EXCEEDED = Problem(
    429, "too-many-streams", "Too many streams from one client", {"Retry-After": "5"}
)
WINDOW_NOT_STREAMED = Problem(422, "window-not-streamed", "Window not streamed")
STREAM_PROBLEMS: dict[type[Exception], Problem] = {
    StreamFullError: STREAM_FULL,
    ClientStreamsExceededError: CLIENT_STREAMS_EXCEEDED,
    WindowNotStreamedError: WINDOW_NOT_STREAMED,
}

BroadcasterDep = Annotated[StatsBroadcaster, Depends(provider(StatsBroadcaster))]
WindowsParam = Annotated[
    list[Annotated[int, Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)]] | None,
    Query(
        max_length=MAX_STREAM_WINDOWS,
        description=f"Windows to stream (repeat for several, up to {MAX_STREAM_WINDOWS}), "
        "each one of the streamed set (`STREAM_WINDOWS`, by default "
        f"{', '.join(map(str, DEFAULT_STREAM_WINDOWS))} seconds; another is 422); all-time "
        "when absent.",
    ),
]
LastEventIdHeader = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=MAX_TOKEN_LENGTH,
        description="Sent by reconnecting EventSources: the stream resumes at once with the "
        "current snapshot (it is always complete, no event needs replaying).",
    ),
]


class _StreamResponse(EventSourceResponse):
    """Unsubscribes however the response ends (done, client gone, send timeout, shutdown),
    and ends the HTTP response properly when sse-starlette stops it for a server shutdown
    (it returns without the last body message; clients would see a truncated transfer)."""

    def __init__(
        self, broadcaster: StatsBroadcaster, subscription: Subscription, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._broadcaster = broadcaster
        self._subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = completed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        try:
            await super().__call__(scope, receive, tracking_send)
            if started and not completed:
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._broadcaster.unsubscribe(self._subscription)


def stream_router(*, heartbeat_seconds: float, send_timeout_seconds: float) -> APIRouter:
    router = APIRouter(tags=["stats"])

    @router.get(
        "/stats/stream",
        summary="Live statistics (Server-Sent Events)",
        response_class=EventSourceResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`event: stats` with a `GET /stats` document as data",
            },
            401: {"description": "Bearer token missing or invalid (when reads are protected)"},
            403: {"description": "Token lacks the scope stats:read"},
            422: {"description": "Invalid window, or one outside the streamed set"},
            429: {"description": "This client holds STREAM_MAX_PER_CLIENT streams already"},
            503: {"description": "The process serves STREAM_MAX_CLIENTS streams already"},
        },
    )
    async def stream_stats(
        request: Request,
        broadcaster: BroadcasterDep,
        window: WindowsParam = None,
        last_event_id: LastEventIdHeader = None,
    ) -> EventSourceResponse:
        # The peer's address, or the client's that a trusted proxy names (TRUSTED_PROXIES).
        client = request.client.host if request.client is not None else "unknown"
        subscription = broadcaster.subscribe(window or [None], client=client)

        async def events() -> AsyncIterator[ServerSentEvent]:
            while (event := await subscription.next()) is not None:
                yield ServerSentEvent(data=event.data, event="stats", id=event.id)

        return _StreamResponse(
            broadcaster,
            subscription,
            content=events(),
            ping=heartbeat_seconds,
            send_timeout=send_timeout_seconds,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
