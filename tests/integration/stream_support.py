"""The query API on a real socket (uvicorn in this process, so streams really stream), and a
small Server-Sent Events reader for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from query_api.config import QueryConfig
from query_api.deps import services_of
from query_api.main import create_app
from query_api.stream.broadcaster import StatsBroadcaster
from shared.settings import DatabaseSettings, JwtSettings, LogSettings, QuerySettings
from shared.web import AppServices
from tests.scratch_database import ROLES, as_role
from tests.unit.command_kit import SECRET


@dataclass(frozen=True, slots=True)
class Served:
    app: FastAPI
    base_url: str

    @property
    def broadcaster(self) -> StatsBroadcaster:
        return AppServices(StatsBroadcaster).of(self.app)


@contextlib.asynccontextmanager
async def serve_query(
    database_url: str, *, send_buffer: int | None = None, **query: Any
) -> AsyncIterator[Served]:
    """The query API from its composition root, served by uvicorn on 127.0.0.1:<ephemeral>;
    `send_buffer` shrinks the kernel send buffer of its connections (slow-client tests)."""
    config = QueryConfig(
        database=DatabaseSettings(
            database_url=SecretStr(as_role(database_url, ROLES.query)),
            database_pool_min=1,
            database_pool_max=4,
        ),
        jwt=JwtSettings(secret=SecretStr(SECRET)),
        query=QuerySettings(**query),
        log=LogSettings(),
    )
    app = create_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: no delayed-ACK stall between a response's head and body.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if send_buffer is not None:  # accepted sockets inherit it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
            proxy_headers=False,  # as deployed: only TRUSTED_PROXIES decides (query_api/main.py)
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(20):
            while not server.started:
                await asyncio.sleep(0.02)
            listener = services_of(app).listener
            assert listener is not None
            await listener.connected.wait()
        yield Served(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    id: str
    data: dict[str, Any]


class EventReader:
    """Reads `event:`/`id:`/`data:` blocks from an open text/event-stream response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, timeout: float = 10.0) -> Event:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if "data" in fields:
                        return Event(
                            fields.get("event", "message"),
                            fields.get("id", ""),
                            json.loads(fields["data"]),
                        )
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        msg = "the stream ended"
        raise EOFError(msg)

    async def until(self, predicate: Any, timeout: float = 10.0) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if predicate(event):
                    return event


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient, path: str = "/stats/stream", **kwargs: Any
) -> AsyncIterator[EventReader]:
    kwargs.setdefault("timeout", 30)  # quiet streams send nothing for a while
    async with client.stream("GET", path, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventReader(response)
