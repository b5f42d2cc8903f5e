"""`AsyncTxStats`: the asyncio client of both APIs, over httpx (one connection pool per API).

Writes: `record` posts one transaction, `record_many` streams any number through
`/transactions/batch` (see `client.batching`). Reads: `stats`, `transaction` and `stream`.
Every request that may be retried is: the statuses and errors of `client.retry`, with back-off
honouring `Retry-After`; a write is retried only with the transaction ids it was first sent
with, which the server counts once however often they arrive.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
from httpx_sse import SSEError, aconnect_sse

from client.batching import RecordPipeline
from client.errors import ApiError, UnavailableError, problem_of
from client.ids import TransactionIds
from client.models import (
    Counted,
    NotCounted,
    Outcome,
    Receipt,
    Stats,
    Transaction,
    TransactionStatus,
    decode,
)
from client.retry import RetryPolicy, retried, retry_after_seconds

TokenProvider = Callable[[], str] | Callable[[], Awaitable[str]]
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
JSON = {"Content-Type": "application/json"}


class AsyncTxStats:
    """Both APIs of one txstats deployment.

    `token` is a bearer JWT, or a callable returning one (sync or async), asked before every
    request: rotate by returning the new one. `timeout` applies per request (a write the
    server does not answer in time is retried like a 503); `max_connections` bounds each
    pool. `command_transport`/`query_transport` replace the network (tests: an ASGI app).
    """

    def __init__(
        self,
        *,
        command_url: str = "http://127.0.0.1:8000",
        query_url: str = "http://127.0.0.1:8001",
        token: str | TokenProvider | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_connections: int = 16,
        command_transport: httpx.AsyncBaseTransport | None = None,
        query_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._command = httpx.AsyncClient(
            base_url=command_url, timeout=timeout, limits=limits, transport=command_transport
        )
        self._query = httpx.AsyncClient(
            base_url=query_url, timeout=timeout, limits=limits, transport=query_transport
        )
        self._token = token
        self.retry = retry or RetryPolicy()
        self.ids = TransactionIds()

    async def __aenter__(self) -> AsyncTxStats:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._command.aclose()
        await self._query.aclose()

    # ------------------------------------------------------------------ plumbing

    async def _auth(self) -> dict[str, str]:
        token = self._token
        if token is None:
            return {}
        if callable(token):
            value = token()
            token = await value if inspect.isawaitable(value) else value
        return {"Authorization": f"Bearer {token}"}

    async def send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, retried while the answer says "not done, come back" or no answer
        comes; the final answer whatever its status. Raises `UnavailableError` when the
        retry policy runs out."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retry_after = None
            try:
                response = await client.request(
                    method,
                    url,
                    content=content,
                    params=params,
                    headers={**(headers or {}), **await self._auth()},
                )
            except httpx.TransportError as err:
                reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                if not retried(response.status_code):
                    return response
                reason = f"{response.status_code} {problem_of(response).describe()}"
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
            delay = self.retry.delay(attempt, retry_after)
            if self.retry.exhausted(attempt, time.monotonic() - started, delay):
                raise UnavailableError(reason, attempts=attempt)
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ writes

    async def record(self, transaction: Transaction) -> Receipt:
        """Record one transaction: its receipt once it is durably in the log. Raises
        `ApiError` when refused (never retried), `UnavailableError` when retries ran out
        (sending it again with the receipt-less id is safe: `transaction_id` was fixed
        before the first attempt; pass your own to keep it)."""
        body = msgspec.json.encode(self.ids.wire(transaction))
        response = await self.send(
            self._command, "POST", "/transactions", content=body, headers=JSON
        )
        if response.status_code != 201:
            raise ApiError.of(response)
        receipt: Receipt = decode(Receipt, response.content)
        return receipt

    def record_many(
        self,
        transactions: Iterable[Transaction] | AsyncIterable[Transaction],
        *,
        batch_size: int = 1000,
        linger: float = 0.05,
        max_in_flight: int = 4,
    ) -> AsyncIterator[Outcome]:
        """Record any number of transactions; one outcome per transaction, **in input
        order**: `Accepted` (with its position), `Refused` (never retried) or `GivenUp`.

        Items are coalesced into `/transactions/batch` requests of up to `batch_size`, sent
        after at most `linger` seconds; at most `max_in_flight` batches are sent and not yet
        reported (so memory stays bounded however long the input). A batch the server
        refuses because of some items (422 naming them) is sent again without them. An
        iterable is read on the event loop: give an async iterable if reading blocks."""
        pipeline = RecordPipeline(
            self, batch_size=batch_size, linger=linger, max_in_flight=max_in_flight
        )
        return pipeline.outcomes(transactions)

    async def post_batch(self, body: bytes) -> httpx.Response:
        """`POST /transactions/batch` with retries (for `RecordPipeline`)."""
        return await self.send(
            self._command, "POST", "/transactions/batch", content=body, headers=JSON
        )

    # ------------------------------------------------------------------ reads

    async def stats(
        self,
        *,
        window: int | None = None,
        consistency_token: str | None = None,
        wait_ms: int | None = None,
    ) -> Stats:
        """`GET /stats`: all-time, or over the last `window` seconds. With a
        `consistency_token` it answers once the projection covers it (the server waits up to
        `wait_ms`; its 503 is retried until the retry policy gives up)."""
        params = _params(window=window, consistency_token=consistency_token, wait_ms=wait_ms)
        response = await self.send(self._query, "GET", "/stats", params=params)
        if response.status_code != 200:
            raise ApiError.of(response)
        stats: Stats = decode(Stats, response.content)
        return stats

    async def transaction(
        self,
        transaction_id: str,
        *,
        consistency_token: str | None = None,
        wait_ms: int | None = None,
    ) -> TransactionStatus:
        """`GET /transactions/{id}`: `Counted` (with duplicates and conflicts) or
        `NotCounted`. After waiting for the write's `consistency_token`, `NotCounted` is final."""
        params = _params(consistency_token=consistency_token, wait_ms=wait_ms)
        path = "/transactions/" + path_segment(transaction_id)
        response = await self.send(self._query, "GET", path, params=params)
        if response.status_code == 200:
            counted: Counted = decode(Counted, response.content)
            return counted
        if response.status_code == 404:
            not_counted: NotCounted = decode(NotCounted, response.content)
            return not_counted
        raise ApiError.of(response)

    async def stream(self, *, windows: Sequence[int] = ()) -> AsyncIterator[Stats]:
        """Live statistics from `GET /stats/stream` (Server-Sent Events), one `Stats` per
        event (all-time, or one per window), forever. A lost stream is reconnected with
        back-off (with `Last-Event-ID`); `UnavailableError` once reconnecting has failed for
        the retry policy's `give_up_after`."""
        params = [("window", window) for window in windows]
        last_id: str | None = None
        attempt, failing_since = 0, time.monotonic()
        while True:
            headers = await self._auth()
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            retry_after = None
            try:
                async with aconnect_sse(
                    self._query, "GET", "/stats/stream", params=params, headers=headers
                ) as source:
                    response = source.response
                    if retried(response.status_code):
                        await response.aread()
                        reason = f"{response.status_code} {problem_of(response).describe()}"
                        retry_after = retry_after_seconds(response.headers.get("retry-after"))
                    elif response.status_code != 200:
                        await response.aread()
                        raise ApiError.of(response)
                    else:
                        attempt, failing_since = 0, time.monotonic()
                        async for event in source.aiter_sse():
                            if event.event == "stats":
                                last_id = event.id or last_id
                                yield decode(Stats, event.data.encode())
                        reason = "the stream ended"
            except (httpx.TransportError, SSEError) as err:
                reason = f"{type(err).__name__}: {err}"
            attempt += 1
            delay = self.retry.delay(attempt, retry_after)
            if self.retry.exhausted(attempt, time.monotonic() - failing_since, delay):
                raise UnavailableError(reason, attempts=attempt)
            await asyncio.sleep(delay)


def path_segment(value: str) -> str:
    """`value` as one path segment: every reserved character escaped, and a dot segment
    ('.', '..') escaped too, which clients and proxies would otherwise resolve away (RFC 3986
    5.2.4) and so ask for another resource."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def _params(**values: object) -> dict[str, object]:
    return {name: value for name, value in values.items() if value is not None}
