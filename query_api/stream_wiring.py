"""The stats stream's part of the composition root (called from query_api/main.py): its
route, the dashboard page, and the one `StatsBroadcaster` of the process."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI

from query_api.position_board import PositionBoard
from query_api.stats.service import StatsService
from query_api.stream.broadcaster import StatsBroadcaster, StreamMetrics
from query_api.stream.dashboard import dashboard_router
from query_api.stream.routes import snapshot_reader, stream_router
from shared.settings import QuerySettings


def install_stream(app: FastAPI, *, config: QuerySettings, guard: list[Any]) -> None:
    """Routes of the stream (behind the same guard as /stats) and the dashboard (public: a
    static page; its data comes from the guarded routes)."""
    router = stream_router(
        heartbeat_seconds=config.stream_heartbeat_seconds,
        send_timeout_seconds=config.stream_send_timeout_seconds,
    )
    app.include_router(router, dependencies=guard)
    app.include_router(dashboard_router())


async def start_stream(
    stack: AsyncExitStack,
    *,
    config: QuerySettings,
    board: PositionBoard,
    service: StatsService,
    metrics: StreamMetrics,
) -> StatsBroadcaster:
    """The process's broadcaster; closed (every stream ended) first on shutdown."""
    broadcaster = StatsBroadcaster(
        read=snapshot_reader(service),
        changes=board,
        metrics=metrics,
        max_hz=config.stream_max_hz,
        max_clients=config.stream_max_clients,
        queue_size=config.stream_queue_size,
    )
    stack.push_async_callback(broadcaster.close)
    return broadcaster
