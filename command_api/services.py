"""The command side's use case: `TransactionRecorder` turns validated commands (one, or a batch
by column) into `TransactionRecorded` events and appends them to the log through the
`EventPublisher` port. No HTTP and no Kafka in here."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import msgspec

from command_api.ports import EventPublisher, Position
from shared.consistency import encode_token
from shared.events import TransactionRecorded, serialize_columns
from shared.money import CENT, MAX_AMOUNT, is_valid_amount
from shared.offsets import highest_offsets

MAX_BATCH_ITEMS = 1000

Clock = Callable[[], datetime]
IdFactory = Callable[[int], list[uuid.UUID]]


class RandomUuids:
    """Version-4 UUIDs as `uuid4()` makes them, made a block at a time: one read of the
    system's randomness and one msgspec decode (in C) for the block, where `uuid4()` costs a
    system call and a Python `UUID()` per id (a full batch needs one to two per item).
    An `IdFactory`."""

    BLOCK = 256

    def __init__(self) -> None:
        self._ready: list[uuid.UUID] = []

    def __call__(self, count: int) -> list[uuid.UUID]:
        if count > len(self._ready):
            self._ready.extend(_random_uuids(max(self.BLOCK, count)))
        rest = len(self._ready) - count
        taken = self._ready[rest:]
        del self._ready[rest:]
        return taken


# The block's random bytes become 16-byte msgpack `bin` values with the version-4 and
# RFC 4122 variant bits set (two byte translations over the whole block), and msgspec decodes
# the msgpack array into `UUID`s.
_BIN16 = b"\xc4\x10"
_VERSION_4 = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_RFC_4122 = bytes((byte & 0x3F) | 0x80 for byte in range(256))
_decode_uuids = msgspec.msgpack.Decoder(list[uuid.UUID]).decode


def _random_uuids(count: int) -> list[uuid.UUID]:
    random = os.urandom(16 * count)
    size = 2 + 16
    packed = bytearray(size * count)
    for at, byte in enumerate(_BIN16):
        packed[at::size] = bytes((byte,)) * count
    for at in range(16):
        packed[2 + at :: size] = random[at::16]
    packed[2 + 6 :: size] = packed[2 + 6 :: size].translate(_VERSION_4)
    packed[2 + 8 :: size] = packed[2 + 8 :: size].translate(_RFC_4122)
    return _decode_uuids(b"\xdd" + count.to_bytes(4, "big") + packed)


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


class TransactionBatch(NamedTuple):
    """Commands by column, already validated: the form a batch is decoded into, without an
    object per item. `amounts` in their two-decimal text (as the event carries them),
    `occurred_at` in UTC, a `transaction_id` of None to be generated."""

    amounts: list[str]
    occurred_at: list[datetime]
    transaction_ids: list[str | None]

    @classmethod
    def of(cls, commands: Sequence[RecordTransaction]) -> TransactionBatch:
        return cls(
            [str(command.amount.quantize(CENT)) for command in commands],
            [command.occurred_at.astimezone(UTC) for command in commands],
            [command.transaction_id for command in commands],
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a producer gets back, by column: one entry per command, in order, and a
    consistency token naming the highest offset written per partition."""

    transaction_ids: list[str]
    event_ids: list[uuid.UUID]
    positions: list[Position]
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
        """Append one command as one event (the path of every single POST)."""
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
            [event.transaction_id], [event_id], positions, encode_token({partition: offset})
        )

    async def record_batch(self, batch: TransactionBatch, *, producer: str) -> Receipt:
        """Append every command as one event; all are acknowledged or the call raises
        `PublishFailedError` (and then some may be in the log: retries reuse the ids).
        Column by column, with no object per item but the event's bytes and its position."""
        amounts, occurred_at, posted_ids = batch
        count = len(amounts)
        if not 1 <= count <= MAX_BATCH_ITEMS:
            msg = f"a batch holds 1..{MAX_BATCH_ITEMS} transactions, got {count}"
            raise ValueError(msg)
        recorded_at = self._clock()
        missing = count - sum(map(bool, posted_ids))
        fresh = self._new_ids(count + missing)  # the event ids, then the missing ids
        event_ids, generated = fresh[:count], iter(fresh[count:])
        transaction_ids = [posted or str(next(generated)) for posted in posted_ids]
        values = serialize_columns(
            event_ids,
            transaction_ids,
            amounts,
            occurred_at,
            recorded_at=recorded_at,
            producer=producer,
        )
        keys = [transaction_id.encode() for transaction_id in transaction_ids]
        positions = await self._publisher.publish_serialized(keys, values)
        _check_count(positions, count)
        return Receipt(transaction_ids, event_ids, positions, consistency_token(positions))


def _check_count(positions: Sequence[Position], events: int) -> None:
    if len(positions) != events:
        msg = f"the publisher returned {len(positions)} positions for {events} events"
        raise RuntimeError(msg)
