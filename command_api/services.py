"""The command side's use case: `TransactionRecorder` turns validated commands into
`TransactionRecorded` events and appends them to the log through the `EventPublisher` port.
No HTTP and no Kafka in here."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from command_api.ports import EventPublisher, Position
from shared.consistency import encode_token
from shared.events import TransactionRecorded
from shared.money import MAX_AMOUNT, is_valid_amount
from shared.offsets import highest_offsets

MAX_BATCH_ITEMS = 1000

Clock = Callable[[], datetime]
IdFactory = Callable[[int], list[uuid.UUID]]


class RandomUuids:
    """Version-4 UUIDs as `uuid4()` makes them, from the system's randomness read a block at a
    time: `uuid4()` reads it once per id, a system call each, and every request needs one or
    two ids (a batch up to two per item). An `IdFactory`."""

    BLOCK_BYTES = 4096

    def __init__(self) -> None:
        self._block = b""
        self._at = 0

    def __call__(self, count: int) -> list[uuid.UUID]:
        size = 16 * count
        if self._at + size > len(self._block):
            self._block, self._at = os.urandom(max(self.BLOCK_BYTES, size)), 0
        at, self._at = self._at, self._at + size
        raw = self._block
        return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(at, at + size, 16)]


class _Transaction(NamedTuple):
    amount: Decimal
    occurred_at: datetime
    transaction_id: str | None = None


class RecordTransaction(_Transaction):
    """Command: record one transaction. Already validated (amount, timestamp, id format); it
    refuses to exist otherwise. A NamedTuple: a batch makes one per item. (`_make` builds one
    without the checks: for a decoder that has just made them.)"""

    __slots__ = ()

    def __new__(
        cls, amount: Decimal, occurred_at: datetime, transaction_id: str | None = None
    ) -> RecordTransaction:
        if not is_valid_amount(amount):
            msg = f"amount {amount} is not in (0, {MAX_AMOUNT}] in whole cents"
            raise ValueError(msg)
        if occurred_at.utcoffset() is None:
            msg = "occurred_at must carry a timezone"
            raise ValueError(msg)
        return super().__new__(cls, amount, occurred_at, transaction_id)


class RecordedTransaction(NamedTuple):
    transaction_id: str
    event_id: uuid.UUID
    position: Position


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a producer gets back: one entry per command, in order, and a consistency token
    naming the highest offset written per partition."""

    transactions: list[RecordedTransaction]
    consistency_token: str


def consistency_token(positions: Sequence[Position]) -> str:
    return encode_token(highest_offsets(positions))  # a Position is a (partition, offset)


class TransactionRecorder:
    def __init__(
        self,
        *,
        publisher: EventPublisher,
        clock: Clock,
        new_ids: IdFactory | None = None,
    ) -> None:
        self._publisher = publisher
        self._clock = clock
        self._new_ids = new_ids or RandomUuids()

    async def record(self, command: RecordTransaction, *, producer: str) -> Receipt:
        """`record_batch` of one command, without a batch's lists (the path of every single
        POST)."""
        amount, occurred_at, transaction_id = command
        event_id, *generated = self._new_ids(1 if transaction_id else 2)
        event = TransactionRecorded(
            event_id,
            transaction_id or str(generated[0]),
            amount,
            occurred_at,
            self._clock(),
            producer,
        )
        positions = await self._publisher.publish([event])
        _check_count(positions, 1)
        [(partition, offset)] = positions
        return Receipt(
            transactions=[RecordedTransaction(event.transaction_id, event_id, positions[0])],
            consistency_token=encode_token({partition: offset}),
        )

    async def record_batch(
        self, commands: Sequence[RecordTransaction], *, producer: str
    ) -> Receipt:
        """Append every command as one event; all are acknowledged or the call raises
        `PublishFailedError` (and then some may be in the log: retries reuse the ids)."""
        if not 1 <= len(commands) <= MAX_BATCH_ITEMS:
            msg = f"a batch holds 1..{MAX_BATCH_ITEMS} transactions, got {len(commands)}"
            raise ValueError(msg)
        recorded_at = self._clock()
        missing = sum(1 for command in commands if not command.transaction_id)
        fresh = iter(self._new_ids(len(commands) + missing))  # event ids and missing ids
        events = [  # positional (event_id, transaction_id, amount, occurred_at, recorded_at,
            # producer): cheaper than keywords, once per item
            TransactionRecorded(
                next(fresh),
                transaction_id or str(next(fresh)),
                amount,
                occurred_at,
                recorded_at,
                producer,
            )
            for amount, occurred_at, transaction_id in commands
        ]
        positions = await self._publisher.publish(events)
        _check_count(positions, len(events))
        return Receipt(
            transactions=[
                RecordedTransaction(event.transaction_id, event.event_id, position)
                for event, position in zip(events, positions, strict=True)
            ],
            consistency_token=consistency_token(positions),
        )


def _check_count(positions: Sequence[Position], events: int) -> None:
    if len(positions) != events:
        msg = f"the publisher returned {len(positions)} positions for {events} events"
        raise RuntimeError(msg)
