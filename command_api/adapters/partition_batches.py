"""`PartitionBatches`: the record batches that concurrent publishes fill together, one open
batch per partition, handed to one `AIOKafkaProducer` whole (`send_batch`: built in
aiokafka's C extension, one future per batch, its acknowledgement fanned out to every publish
with a record in it).

Why: awaiting one aiokafka `send()` per event costs a future, a metadata wait, the producer's
Python batching and a wake-up per event; here an event costs one append to a C record batch
and its publish one await, however many events share the batch.

How a partition's batches travel (one `_Lane` each):
- a publish appends each event to its partition's open batch and learns the batch's
  `Ticket` and the event's place in it (the position is the batch's base offset + that
  place, once acknowledged);
- an idle partition hands its open batch to the producer when the event loop has run the
  callbacks ready now (the publishes of this turn), or after `linger` seconds when set;
- a partition has one batch with the producer at a time: aiokafka sends a partition one batch
  per round trip anyway (it keeps one in flight), so the next batch fills meanwhile and goes
  on the acknowledgement. A full batch is queued and the next one started;
- every batch has a deadline (the publish timeout from its first event): unacknowledged by
  then, its ticket fails with `TimeoutError` (a batch not yet handed over is then never
  sent) and the partition moves on.

A ticket's outcome is the base offset, `TimeoutError`, or the producer's error (a
`KafkaError`): the publisher turns the last two into its 503s.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from typing import Any

from shared.events import event_headers

_HEADERS = event_headers()


class Ticket:
    """The outcome of one record batch, shared by every publish with an event in it."""

    __slots__ = ("ack", "deadline", "outcome", "partition")

    def __init__(self, loop: asyncio.AbstractEventLoop, partition: int, timeout: float) -> None:
        self.partition = partition
        self.outcome: asyncio.Future[int] = loop.create_future()  # the batch's base offset
        self.deadline = loop.call_later(timeout, self._expire)
        self.ack: asyncio.Future[Any] | None = None

    @property
    def open(self) -> bool:
        return not self.outcome.done()

    def resolve(self, base_offset: int) -> None:
        self.deadline.cancel()
        if not self.outcome.done():
            self.outcome.set_result(base_offset)

    def fail(self, error: BaseException) -> None:
        self.deadline.cancel()
        if not self.outcome.done():
            self.outcome.set_exception(error)
            self.outcome.exception()  # its publishes get it; none left is no leak to log

    def _expire(self) -> None:
        self.fail(TimeoutError())
        if self.ack is not None:
            self.ack.cancel()  # stop waiting for it (the producer may still deliver it)


class _Lane:
    """One partition: its open batch, full batches waiting their turn, and whether a batch of
    it is with the producer (or about to be)."""

    __slots__ = ("batch", "busy", "full", "partition", "ticket")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.batch: Any = None
        self.ticket: Ticket | None = None
        self.full: deque[tuple[Any, Ticket]] = deque()
        self.busy = False

    def next_batch(self) -> tuple[Any, Ticket] | None:
        """The next batch to hand over (full ones first), skipping those past their
        deadline: their publishes have been answered already."""
        while self.full:
            batch, ticket = self.full.popleft()
            if ticket.open:
                return batch, ticket
        batch, open_ticket = self.batch, self.ticket
        self.batch = self.ticket = None
        if open_ticket is None or not open_ticket.open or not batch.record_count():
            return None
        return batch, open_ticket


class PartitionBatches:
    """Open record batches per partition over one producer (see the module's docstring)."""

    def __init__(self, producer: Any, topic: str, *, timeout: float, linger: float) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout
        self._linger = linger
        self._loop = asyncio.get_running_loop()
        self._lanes: dict[int, _Lane] = {}
        self._waiting: list[_Lane] = []  # idle lanes with records, until the flush
        self._flush: asyncio.Handle | None = None
        self._handing: set[asyncio.Task[None]] = set()
        self._closed = False

    def append(self, partition: int, key: bytes, value: bytes) -> tuple[Ticket, int]:
        """Add a record to the partition's open batch: the batch's ticket and the record's
        place in it."""
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = _Lane(partition)
        batch, ticket = lane.batch, lane.ticket
        if ticket is None or not ticket.open:  # none yet, or past its deadline unsent
            batch, ticket = self._open(lane)
        place = batch.record_count()
        if batch.append(key=key, value=value, timestamp=None, headers=_HEADERS) is None:
            lane.full.append((batch, ticket))  # full: the next one takes this record
            batch, ticket = self._open(lane)
            place = 0
            if batch.append(key=key, value=value, timestamp=None, headers=_HEADERS) is None:
                msg = "a record that an empty record batch refuses"
                raise ValueError(msg)
        if not lane.busy:
            lane.busy = True  # until it has handed this batch over and had the ack
            self._waiting.append(lane)
            if self._flush is None:
                self._flush = (
                    self._loop.call_later(self._linger, self._hand_waiting)
                    if self._linger
                    else self._loop.call_soon(self._hand_waiting)
                )
        return ticket, place

    def _open(self, lane: _Lane) -> tuple[Any, Ticket]:
        lane.batch = self._producer.create_batch()
        lane.ticket = Ticket(self._loop, lane.partition, self._timeout)
        return lane.batch, lane.ticket

    def _hand_waiting(self) -> None:
        self._flush = None
        waiting, self._waiting = self._waiting, []
        for lane in waiting:
            self._hand_next(lane)

    def _hand_next(self, lane: _Lane) -> None:
        following = None if self._closed else lane.next_batch()
        if following is None:
            lane.busy = False
            return
        batch, ticket = following
        batch.close()  # no record may join a batch the producer holds
        task = self._loop.create_task(self._hand(lane, batch, ticket))
        self._handing.add(task)
        task.add_done_callback(self._handing.discard)

    async def _hand(self, lane: _Lane, batch: Any, ticket: Ticket) -> None:
        try:
            ack = await self._producer.send_batch(batch, self._topic, partition=lane.partition)
        except Exception as err:  # noqa: BLE001 - the ticket's publishes get it, whatever it is
            ticket.fail(err)
            self._hand_next(lane)
            return
        ticket.ack = ack
        ack.add_done_callback(functools.partial(self._acked, lane, ticket))

    def _acked(self, lane: _Lane, ticket: Ticket, ack: asyncio.Future[Any]) -> None:
        if not ack.cancelled():
            error = ack.exception()
            if error is None:
                ticket.resolve(ack.result().offset)
            else:
                ticket.fail(error)
        self._hand_next(lane)

    def close(self, error: BaseException) -> None:
        """Hand nothing more over; fail the batches not handed over yet with `error`."""
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for lane in self._lanes.values():
            for _, ticket in lane.full:
                ticket.fail(error)
            if lane.ticket is not None:
                lane.ticket.fail(error)
            lane.full.clear()
            lane.batch = lane.ticket = None
