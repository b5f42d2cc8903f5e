"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for paced (open-loop) load where
wrk's closed loop does not fit. It understands exactly what our servers send: a status line,
headers with Content-Length, a body."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

# uvicorn closes a keep-alive connection idle for 5 s: never reuse one idle for this long.
MAX_IDLE_SECONDS = 2.0


class HttpError(RuntimeError):
    pass


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(
        self, method: str, target: str, headers: bytes, body: bytes = b""
    ) -> tuple[int, bytes]:
        head = f"{method} {target} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + headers + b"\r\n" + body)
        status_line = await self._reader.readline()
        if not status_line:
            raise HttpError("connection closed")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await self._reader.readexactly(length)
        self.last_used = time.monotonic()
        return status, body

    def close(self) -> None:
        self._writer.close()


class Pool:
    """Idle keep-alive connections to one origin; opens more on demand (up to `limit`)."""

    def __init__(self, url: str, *, limit: int = 64) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit)

    async def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        raw_headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        async with self._slots:
            conn = self._take_idle() or await Connection.open(self._host, self._port)
            try:
                result = await conn.request(method, target, raw_headers, body)
            except BaseException:
                conn.close()
                raise
            self._idle.append(conn)
            return result

    def _take_idle(self) -> Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.last_used < MAX_IDLE_SECONDS:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
