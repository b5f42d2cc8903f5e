"""A record of the log, decoded: an event to fold, or a poison message to store and skip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from shared.events import EventDecodeError, TransactionRecorded, deserialize, deserialize_all

if TYPE_CHECKING:  # the ports name what a decoded record is: no import cycle at run time
    from projector.ports import SourceRecord


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


def decode_slice(partition: int, messages: Sequence[SourceRecord]) -> list[ConsumedRecord]:
    """`messages` of one partition, in offset order, decoded: in one pass when every one is an
    event (the usual case), else one by one, so that each poison record is found and kept at
    its own offset."""
    events = deserialize_all([m.value for m in messages])
    if events is None:
        return [decode(partition, m.offset, m.value) for m in messages]
    return [
        ConsumedRecord(partition, m.offset, event)
        for m, event in zip(messages, events, strict=True)
    ]
