"""Baseline apps, served by the same uvicorn settings as the real services.

- `noop_command_app`: `POST /transactions` and `POST /transactions/batch` with the command
  API's own dependencies (its `CommandServices`, with a publisher that is never called), so
  the same JWT check (scope `transactions:write`) and the same decoding and validation of
  the body into commands, then 201 with a constant body: nothing is published. The real
  endpoint's cost over this one is the event log (and its response).
- `noop_stats_app`: `GET /stats` returning a constant JSON document of the real answer's shape,
  from a bare FastAPI route: the floor for any read endpoint on this stack.

`uvicorn --factory bench.baselines:noop_command_app` (and `:noop_stats_app`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Response

from command_api.deps import (
    BatchCommands,
    CommandServices,
    TransactionCommand,
    Writer,
    install_services,
)
from command_api.ports import Position
from command_api.services import TransactionRecorder
from shared.auth import JwtVerifier
from shared.events import TransactionRecorded
from shared.settings import ClockSkewSettings, JwtSettings

ACCEPTED: dict[str, Any] = {"status": "accepted"}

STATS: dict[str, Any] = {
    "count": 1_000_000,
    "sum": "5000123456.78",
    "avg": "5000.12",
    "max": "10000.00",
    "min": "0.01",
    "as_of": {
        "version": 1,
        "offsets": {str(p): 166_667 for p in range(6)},
        "lag": {str(p): 0 for p in range(6)},
        "total_lag": 0,
        "server_time": "2026-11-26T12:00:00Z",
        "window": None,
    },
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _UnusedPublisher:
    """The `EventPublisher` of the no-op routes, which never record anything."""

    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        msg = "the no-op command app publishes nothing"
        raise RuntimeError(msg)

    async def check_ready(self) -> None:
        return None


def noop_command_app() -> FastAPI:
    app = FastAPI(title="bench: no-op command endpoint")
    install_services(
        app,
        CommandServices(
            verifier=JwtVerifier(JwtSettings()),
            clock=_utc_now,
            max_clock_skew=timedelta(seconds=ClockSkewSettings().max_clock_skew_seconds),
            recorder=TransactionRecorder(publisher=_UnusedPublisher(), clock=_utc_now),
        ),
    )

    @app.post("/transactions", status_code=201)
    async def record(_: Writer, __: TransactionCommand) -> dict[str, Any]:
        return ACCEPTED

    @app.post("/transactions/batch", status_code=201)
    async def record_batch(_: Writer, __: BatchCommands) -> dict[str, Any]:
        return ACCEPTED

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    return app


def noop_stats_app() -> FastAPI:
    app = FastAPI(title="bench: constant stats endpoint")

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return STATS

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    return app
