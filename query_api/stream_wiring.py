"""The stats stream's part of the composition root (called from query_api/main.py): its
route, its metrics, the dashboard page, and the one `StatsBroadcaster` of the process."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from query_api.adapters.prometheus_stream_metrics import PrometheusStreamMetrics
from query_api.dashboard import dashboard_router
from query_api.progress import ProgressBoard
from query_api.services import StatsService
from query_api.stream import StatsBroadcaster
from query_api.stream_routes import STREAM_PROBLEMS, snapshot_reader, stream_router
from shared.errors import Problem
from shared.settings import QuerySettings


def install_stream(
    app: FastAPI, *, config: QuerySettings, registry: CollectorRegistry, guard: list[Any]
) -> dict[type[Exception], Problem]:
    """Routes of the stream (behind the same guard as /stats) and the dashboard (public: a
    static page; its data comes from the guarded routes). Returns the problems to map."""
    app.state.stream_metrics = PrometheusStreamMetrics(registry)
    router = stream_router(
        heartbeat_seconds=config.stream_heartbeat_seconds,
        send_timeout_seconds=config.stream_send_timeout_seconds,
    )
    app.include_router(router, dependencies=guard)
    app.include_router(dashboard_router())
    return STREAM_PROBLEMS


async def start_stream(
    app: FastAPI,
    stack: AsyncExitStack,
    *,
    config: QuerySettings,
    board: ProgressBoard,
    service: StatsService,
) -> StatsBroadcaster:
    """The process's broadcaster; closed (every stream ended) first on shutdown."""
    broadcaster = StatsBroadcaster(
        read=snapshot_reader(service),
        changes=board,
        metrics=app.state.stream_metrics,
        max_hz=config.stream_max_hz,
        max_clients=config.stream_max_clients,
        queue_size=config.stream_queue_size,
    )
    stack.push_async_callback(broadcaster.close)
    app.state.stream_broadcaster = broadcaster
    return broadcaster
