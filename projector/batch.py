"""A batch of consumed records, decoded: each record is an event or a poison message."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import NamedTuple

from projector.errors import OffsetGapError
from projector.fold import Delta, epoch_second
from shared.events import EventDecodeError, TransactionRecorded, deserialize
from shared.offsets import highest_offsets


class Poison(NamedTuple):
    reason: str
    payload: bytes | None


class ConsumedRecord(NamedTuple):
    partition: int
    offset: int
    item: TransactionRecorded | Poison


@dataclass(slots=True)
class Batch:
    records: list[ConsumedRecord] = field(default_factory=list)
    log_end_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def partitions(self) -> list[int]:
        return sorted({record.partition for record in self.records})

    def next_offsets(self) -> dict[int, int]:
        """Per partition: one past the highest offset in the batch."""
        return highest_offsets((partition, offset + 1) for partition, offset, _ in self.records)


def decode(partition: int, offset: int, value: bytes | None) -> ConsumedRecord:
    try:
        item: TransactionRecorded | Poison = deserialize(value)
    except EventDecodeError as err:
        item = Poison(reason=str(err), payload=value)
    return ConsumedRecord(partition, offset, item)


_POSITION = itemgetter(0, 1)  # (partition, offset) of a ConsumedRecord, at C speed


def fresh_records(batch: Batch, stored: dict[int, int]) -> tuple[list[ConsumedRecord], int]:
    """The records at or past the stored offsets, and how many were stale (already folded).

    A partition whose first fresh record lies past its stored offset would skip records:
    that raises `OffsetGapError` so the consumer re-seeks.
    """
    fresh: list[ConsumedRecord] = []
    stale = 0
    expected = dict(stored)
    for record in sorted(batch.records, key=_POSITION):
        position = expected.get(record.partition, 0)
        if record.offset < position:
            stale += 1
            continue
        if record.offset > position:
            msg = f"partition {record.partition}: got offset {record.offset}, stored {position}"
            raise OffsetGapError(msg)
        fresh.append(record)
        expected[record.partition] = record.offset + 1
    return fresh, stale


def events_of(records: Iterable[ConsumedRecord]) -> list[tuple[int, TransactionRecorded]]:
    return [(r.partition, r.item) for r in records if isinstance(r.item, TransactionRecorded)]


def poison_of(records: Iterable[ConsumedRecord]) -> list[tuple[int, int, Poison]]:
    return [(r.partition, r.offset, r.item) for r in records if isinstance(r.item, Poison)]


def fold_new(
    events: Iterable[tuple[int, TransactionRecorded]], new_ids: set[str]
) -> tuple[Delta, tuple[TransactionRecorded, ...]]:
    """Fold the first occurrence of every id in `new_ids`; everything else is a duplicate."""
    by_partition: defaultdict[int, list[Decimal]] = defaultdict(list)
    by_second: defaultdict[int, list[Decimal]] = defaultdict(list)
    folded: list[TransactionRecorded] = []
    pending = set(new_ids)
    for partition, event in events:
        if event.transaction_id in pending:
            pending.discard(event.transaction_id)
            by_partition[partition].append(event.amount)
            by_second[epoch_second(event.occurred_at)].append(event.amount)
            folded.append(event)
    return Delta.of(by_partition, by_second), tuple(folded)
