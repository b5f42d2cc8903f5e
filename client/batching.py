"""`record_many`'s pipeline: transactions in, one outcome per transaction out, in input order.

A feeder task reads the input, fixes each item's id, and coalesces items into batches: a batch
is sent when it holds `batch_size` items, when `linger` seconds passed since its first item,
or before an item whose id it already holds (the server refuses repeated ids in one batch).
Such a repeat is sent only once every earlier batch is answered: batches in flight reach the
log in any order, and the log's first occurrence of an id is the one counted.
Each batch is one task (send, retry, split a 422); the consumer awaits them in order. A batch
holds one of `max_in_flight` slots from its first item until its outcomes are handed out, so
a batch that keeps retrying stops the feeder instead of letting later outcomes pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING

import msgspec

from client.errors import UnavailableError, problem_of
from client.ids import WireItem
from client.models import (
    Accepted,
    BatchReceipt,
    FieldError,
    GivenUp,
    Outcome,
    Refused,
    Transaction,
    decode,
)

if TYPE_CHECKING:
    from client.aio import AsyncTxStats

MAX_BATCH_SIZE = 1000  # the command API's limit of items per /transactions/batch
_ITEM_FIELD = "transactions."
_encode = msgspec.json.Encoder().encode


class _Batch(msgspec.Struct):
    transactions: list[WireItem]


def item_errors(errors: list[FieldError], count: int) -> dict[int, list[FieldError]]:
    """The field errors of a batch's 422 that name an item (`transactions.<i>.<field>`), by
    item index, with the item's part of the field name only."""
    named: dict[int, list[FieldError]] = {}
    for error in errors:
        if not error.field.startswith(_ITEM_FIELD):
            continue
        index, _, field = error.field[len(_ITEM_FIELD) :].partition(".")
        if index.isdigit() and int(index) < count:
            own = FieldError(error.location, field or error.field, error.message, error.code)
            named.setdefault(int(index), []).append(own)
    return named


class RecordPipeline:
    def __init__(
        self, client: AsyncTxStats, *, batch_size: int, linger: float, max_in_flight: int
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            msg = f"batch_size is 1..{MAX_BATCH_SIZE} (the API's batch limit)"
            raise ValueError(msg)
        if max_in_flight < 1 or linger < 0:
            msg = "max_in_flight is at least 1 and linger at least 0"
            raise ValueError(msg)
        self._client = client
        self._batch_size = batch_size
        self._linger = linger
        self._max_in_flight = max_in_flight

    async def outcomes(
        self, transactions: Iterable[Transaction] | AsyncIterable[Transaction]
    ) -> AsyncIterator[Outcome]:
        async for outcomes in self.batches(self.wired(transactions)):
            for outcome in outcomes:
                yield outcome

    async def wired(
        self, transactions: Iterable[Transaction] | AsyncIterable[Transaction]
    ) -> AsyncIterator[list[WireItem]]:
        """The transactions as sent, their ids fixed: an iterable a batch at a time, an async
        iterable item by item (its next item may be slow to come: the linger applies)."""
        wire = self._client.ids.wire
        if isinstance(transactions, AsyncIterable):
            async for transaction in transactions:
                yield [wire(transaction)]
        else:
            each = iter(transactions)
            while chunk := [wire(t) for t in itertools.islice(each, self._batch_size)]:
                yield chunk

    async def batches(
        self, items: AsyncIterable[list[WireItem]]
    ) -> AsyncGenerator[list[Outcome], None]:
        """The outcomes batch by batch, in input order (what `outcomes` flattens), of items
        given in chunks of any size: a producer with its items at hand (the importer) hands
        them over a chunk at a time, not one await per item."""
        sent: asyncio.Queue[asyncio.Task[list[Outcome]] | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self._max_in_flight)
        feeder = asyncio.create_task(self._feed(items, sent, slots))
        try:
            while (task := await sent.get()) is not None:
                outcomes = await task
                slots.release()
                yield outcomes
            await feeder  # the input's own error, if it raised one
        finally:
            feeder.cancel()
            while not sent.empty():
                if (task := sent.get_nowait()) is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    async def _feed(
        self,
        items: AsyncIterable[list[WireItem]],
        sent: asyncio.Queue[asyncio.Task[list[Outcome]] | None],
        slots: asyncio.Semaphore,
    ) -> None:
        loop = asyncio.get_running_loop()
        batch: list[WireItem] = []
        ids: set[str] = set()
        timer: asyncio.TimerHandle | None = None
        in_flight: set[asyncio.Task[list[Outcome]]] = set()
        sending: set[str] = set()  # the ids of the batches in flight

        def flush() -> None:
            nonlocal batch, ids, timer
            if timer is not None:
                timer.cancel()
                timer = None
            if batch:
                task = asyncio.create_task(self._send(batch))
                in_flight.add(task)
                sending.update(ids)

                def answered(task: asyncio.Task[list[Outcome]], ids: set[str] = ids) -> None:
                    in_flight.discard(task)
                    sending.difference_update(ids)

                task.add_done_callback(answered)
                sent.put_nowait(task)
                batch, ids = [], set()

        try:
            async for chunk in items:
                for item in chunk:
                    key = item.transaction_id
                    if key in ids or key in sending:
                        flush()
                        await asyncio.wait(in_flight)
                    if not batch:
                        await slots.acquire()
                        timer = loop.call_later(self._linger, flush)
                    batch.append(item)
                    ids.add(key)
                    if len(batch) >= self._batch_size:
                        flush()
                        await asyncio.sleep(0)  # let the batch's request start
            flush()
        finally:
            if timer is not None:
                timer.cancel()
            sent.put_nowait(None)

    async def _send(self, items: list[WireItem]) -> list[Outcome]:
        """Send one batch until every item has an outcome: accepted, refused by a 422 naming
        it (the others are sent again without it), refused with the whole request, or given
        up when the retries run out."""
        outcomes: list[Outcome | None] = [None] * len(items)
        waiting = list(range(len(items)))
        while waiting:
            everything = len(waiting) == len(items)  # what nearly every batch is
            body = _encode(_Batch(items if everything else [items[i] for i in waiting]))
            try:
                response = await self._client.post_batch(body)
            except UnavailableError as err:
                for i in waiting:
                    outcomes[i] = GivenUp(items[i].transaction_id, err.reason)
                break
            if response.status_code == 201:
                receipt: BatchReceipt = decode(BatchReceipt, response.content)
                token = receipt.consistency_token
                recorded_items = receipt.transactions
                if everything:
                    return [
                        Accepted(item.transaction_id, recorded.position, token)
                        for item, recorded in zip(items, recorded_items, strict=True)
                    ]
                for i, recorded in zip(waiting, recorded_items, strict=True):
                    outcomes[i] = Accepted(items[i].transaction_id, recorded.position, token)
                break
            problem = problem_of(response)
            named = item_errors(problem.errors, len(waiting))
            status = response.status_code
            if status == 422 and named:
                for local, errors in named.items():
                    i = waiting[local]
                    outcomes[i] = Refused(items[i].transaction_id, status, problem, errors, True)
                waiting = [i for local, i in enumerate(waiting) if local not in named]
                continue
            for i in waiting:
                outcomes[i] = Refused(items[i].transaction_id, status, problem, [], False)
            break
        return [outcome for outcome in outcomes if outcome is not None]
