"""A record of the log, decoded: an event to fold, or a poison message to store and skip."""

from __future__ import annotations

from typing import NamedTuple

from shared.events import EventDecodeError, TransactionRecorded, deserialize


class Poison(NamedTuple):
    reason: str
    payload: bytes | None


class ConsumedRecord(NamedTuple):
    partition: int
    offset: int
    item: TransactionRecorded | Poison


def decode(partition: int, offset: int, value: bytes | None) -> ConsumedRecord:
    try:
        item: TransactionRecorded | Poison = deserialize(value)
    except EventDecodeError as err:
        item = Poison(reason=str(err), payload=value)
    return ConsumedRecord(partition, offset, item)
