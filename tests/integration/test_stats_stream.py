"""GET /stats/stream on a real socket against a real PostgreSQL: the projection's NOTIFY pushes
snapshots to every client with one shared read per change, Last-Event-ID resumes at once, the
same auth rule as /stats, and 503 at the client limit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.auth import SCOPE_READ
from shared.settings import DEFAULT_STREAM_WINDOWS
from tests.integration.command_support import running_app
from tests.integration.conftest import TopicFactory
from tests.integration.stream_support import EventReader, serve_query, stream
from tests.integration.support import running_projector
from tests.integration.test_query_api import advance, seed_partition
from tests.scratch_database import ROLES, as_role
from tests.unit.command_kit import SECRET, bearer, token


async def test_a_client_connected_before_a_post_receives_it(
    kafka_settings: TopicFactory, database_url: str, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    async with (
        running_projector(kafka, database_url, tmp_path / "projector.log"),
        serve_query(database_url) as served,
        running_app(kafka) as (_, command),
        httpx.AsyncClient(base_url=served.base_url) as client,
        stream(client) as events,
    ):
        first = await events.next()
        assert first.event == "stats"
        assert first.data["count"] == 0
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        posted = await command.post(
            "/transactions",
            content=json.dumps({"amount": "12.34", "timestamp": stamp}),
            headers=bearer(),
        )
        assert posted.status_code == 201, posted.text
        seen = await events.until(lambda e: e.data["count"] == 1, timeout=15)
    assert {k: seen.data[k] for k in ("count", "sum", "avg", "max", "min")} == {
        "count": 1,
        "sum": "12.34",
        "avg": "12.34",
        "max": "12.34",
        "min": "12.34",
    }
    position = posted.json()["position"]
    assert seen.data["as_of"]["offsets"][str(position["partition"])] == position["offset"] + 1
    assert seen.id.startswith("v1.")


async def test_two_hundred_clients_cost_one_read_per_change(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    clients = 200
    limits = httpx.Limits(max_connections=clients + 10)
    async with (
        serve_query(database_url, stream_max_per_client=clients) as served,  # one address
        httpx.AsyncClient(base_url=served.base_url, limits=limits, timeout=30) as client,
    ):
        readers = []
        stack = []
        for _ in range(clients):
            context = stream(client)
            readers.append(await context.__aenter__())
            stack.append(context)
        try:
            firsts = await asyncio.gather(*(r.next() for r in readers))
            assert {e.data["count"] for e in firsts} == {1}
            reads_before = served.broadcaster.reads
            changes = 3
            for step in range(changes):
                offset = 2 + step
                await advance(pg_pool, 0, offset)
                got = await asyncio.gather(
                    *(
                        r.until(lambda e, o=offset: e.data["as_of"]["offsets"]["0"] == o)
                        for r in readers
                    )
                )
                assert {e.data["count"] for e in got} == {2 + step}
            reads = served.broadcaster.reads - reads_before
        finally:
            for context in stack:
                await context.__aexit__(None, None, None)
    # one read per change, shared by 200 clients (a notification may split in two reads)
    assert changes <= reads <= 2 * changes


async def test_last_event_id_resumes_at_once_with_the_current_snapshot(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with (
        serve_query(database_url) as served,
        httpx.AsyncClient(base_url=served.base_url) as client,
    ):
        async with stream(client) as events:
            first = await events.next()
        await advance(pg_pool, 0, 2)  # a change while disconnected
        async with stream(client, headers={"Last-Event-ID": first.id}) as events:
            resumed = await events.next(timeout=5)
    assert resumed.data["count"] == 2
    assert resumed.data["as_of"]["offsets"] == {"0": 2}
    assert resumed.id == "v1.0-2"
    assert first.id == "v1.0-1"


async def test_windows_stream_their_own_snapshots(pg_pool: asyncpg.Pool, database_url: str) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with (
        serve_query(database_url) as served,
        httpx.AsyncClient(base_url=served.base_url) as client,
        stream(client, params=[("window", "1"), ("window", "60")]) as events,
    ):
        windows: set[int] = set()
        while windows != {1, 60}:
            event = await events.next()
            windows.add(event.data["as_of"]["window"]["seconds"])
        refused = await client.get("/stats/stream", params={"window": 0})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"


async def test_the_stream_requires_the_same_auth_as_stats(database_url: str) -> None:
    async with (
        serve_query(database_url, stats_require_auth=True) as served,
        httpx.AsyncClient(base_url=served.base_url) as client,
    ):
        anonymous = await client.get("/stats/stream")
        wrong_scope = await client.get("/stats/stream", headers=bearer())
        headers = {"authorization": f"Bearer {token(scopes=SCOPE_READ)}"}
        async with stream(client, headers=headers) as events:
            event = await events.next()
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert wrong_scope.status_code == 403
    assert event.data["count"] == 0


async def test_clients_beyond_the_limit_get_503(database_url: str) -> None:
    async with (
        serve_query(database_url, stream_max_clients=2) as served,
        httpx.AsyncClient(base_url=served.base_url) as client,
        stream(client) as one,
        stream(client, params={"window": 5}) as two,
    ):
        await one.next()
        await two.next()
        refused = await client.get("/stats/stream")
        assert served.broadcaster.clients == 2
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["title"] == "Too many streams"
    assert refused.headers["retry-after"] == "5"


async def test_a_client_that_stops_reading_is_dropped(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with (
        serve_query(
            database_url,
            send_buffer=4096,
            stream_max_hz=100,
            stream_queue_size=2,
            stream_send_timeout_seconds=2,
        ) as served,
        httpx.AsyncClient(base_url=served.base_url) as client,
        stream(client) as healthy,
    ):
        await healthy.next()
        host, port = served.base_url.removeprefix("http://").split(":")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, (host, int(port)))
        windows = "&".join(f"window={n}" for n in DEFAULT_STREAM_WINDOWS[:8])
        request = f"GET /stats/stream?{windows} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        await loop.sock_sendall(slow, request.encode())
        await wait_until(lambda: served.broadcaster.clients == 2)  # then never read again
        offset = 2
        async with asyncio.timeout(60):
            while served.broadcaster.clients > 1:  # snapshots flow until the slow one is out
                await advance(pg_pool, 0, offset)
                offset += 1
                await asyncio.sleep(0.01)
        # the well-behaved stream goes on, and sees the latest change
        latest = await healthy.until(lambda e: e.data["as_of"]["offsets"]["0"] == offset - 1)
        assert latest.data["count"] == offset - 1
        metrics = (await client.get("/metrics")).text
        assert "stats_stream_dropped_clients_total 1.0" in metrics
        # and the server closes the slow connection (send timeout): reading reaches EOF
        async with asyncio.timeout(30):
            while await loop.sock_recv(slow, 65536):
                pass
        slow.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_shutdown_ends_open_streams_cleanly(database_url: str) -> None:
    """A real `uvicorn` process (sse-starlette's shutdown hook is process-wide, so not in this
    one): SIGTERM ends an open stream with a complete HTTP response, and the process exits."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": as_role(database_url, ROLES.query),
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "query_api.main:create_app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until_async(ready)
            async with stream(client) as events:
                await events.next()
                process.send_signal(signal.SIGTERM)
                with pytest.raises(EOFError):  # not httpx.RemoteProtocolError (truncated)
                    await drain(events)
        # uvicorn re-raises the signal once it has shut down gracefully
        assert await asyncio.to_thread(process.wait, 15) in {0, -signal.SIGTERM}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def drain(events: EventReader) -> None:
    """Read events until the stream ends (EOFError) or 15 s pass."""
    async with asyncio.timeout(15):
        while True:
            await events.next(timeout=15)


async def wait_until_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.1)
