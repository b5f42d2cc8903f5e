"""`TxStats`: the same client for synchronous code. It runs one `AsyncTxStats` on an event
loop in a thread of its own (anyio's blocking portal), so both share one implementation and
one connection pool; each call crosses to that thread once (`record_many` once per batch)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from client.aio import AsyncTxStats
from client.batching import RecordPipeline
from client.models import Outcome, Receipt, Stats, Transaction, TransactionStatus

T = TypeVar("T")
_END = object()


async def _next(iterator: AsyncIterator[T]) -> T | object:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


class TxStats:
    """`AsyncTxStats`'s methods, blocking; same arguments (see there). Close it (or use it as
    a context manager) to stop its thread."""

    def __init__(self, **settings: Any) -> None:
        self._portal_context: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_context.__enter__()
        try:
            self._client: AsyncTxStats = self._portal.call(lambda: _build(settings))
        except BaseException:
            self._portal_context.__exit__(None, None, None)  # no client: stop its thread now
            raise

    def __enter__(self) -> TxStats:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._portal_context.__exit__(None, None, None)

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        try:
            while (item := self._portal.call(_next, iterator)) is not _END:
                yield item  # type: ignore[misc]
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                self._portal.call(aclose)

    def record(self, transaction: Transaction) -> Receipt:
        return self._portal.call(self._client.record, transaction)

    def record_many(
        self,
        transactions: Iterable[Transaction],
        *,
        batch_size: int = 1000,
        linger: float = 0.05,
        max_in_flight: int = 4,
    ) -> Iterator[Outcome]:
        pipeline = RecordPipeline(
            self._client, batch_size=batch_size, linger=linger, max_in_flight=max_in_flight
        )
        for outcomes in self._iterate(pipeline.batches(pipeline.wired(transactions))):
            yield from outcomes

    def stats(
        self,
        *,
        window: int | None = None,
        consistency_token: str | None = None,
        wait_ms: int | None = None,
    ) -> Stats:
        async def read() -> Stats:
            return await self._client.stats(
                window=window, consistency_token=consistency_token, wait_ms=wait_ms
            )

        return self._portal.call(read)

    def transaction(
        self,
        transaction_id: str,
        *,
        consistency_token: str | None = None,
        wait_ms: int | None = None,
    ) -> TransactionStatus:
        async def read() -> TransactionStatus:
            return await self._client.transaction(
                transaction_id, consistency_token=consistency_token, wait_ms=wait_ms
            )

        return self._portal.call(read)

    def stream(self, *, windows: Sequence[int] = ()) -> Iterator[Stats]:
        return self._iterate(self._client.stream(windows=windows))


async def _build(settings: dict[str, Any]) -> AsyncTxStats:
    return AsyncTxStats(**settings)
