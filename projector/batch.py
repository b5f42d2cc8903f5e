"""A batch of consumed records, decoded: each record is an event or a poison message."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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


FirstColumns = tuple[
    Sequence[str],
    Sequence[int],
    Sequence[int],
    Sequence[Decimal],
    Sequence[datetime],
    Sequence[datetime],
    Sequence[str],
]
"""Transaction ids, partitions, offsets, amounts, occurred_at, recorded_at, producers."""


@dataclass(frozen=True, slots=True)
class Fresh:
    """The records of a batch that a commit folds (those at or past the stored offsets, in
    position order) and what they hold."""

    records: list[ConsumedRecord]
    stale: int
    events: list[tuple[int, TransactionRecorded]]
    first: FirstColumns | None
    poison: list[tuple[int, int, Poison]]
    all_new: tuple[Delta, tuple[TransactionRecorded, ...]] | None = None
    """`fold(every id)`, computed ahead when the ids are distinct."""

    @staticmethod
    def of(records: list[ConsumedRecord], stale: int, *, ahead: bool = False) -> Fresh:
        """`ahead`: also fold as if every id were new (the usual case), before the commit."""
        events = _events_of(records)
        first = _first_columns(records)
        all_new = None
        if ahead and first is not None and len(first[0]) == len(events):
            all_new = _fold_new(events, set(first[0]))
        return Fresh(records, stale, events, first, _poison_of(records), all_new)

    def fold(self, new_ids: set[str]) -> tuple[Delta, tuple[TransactionRecorded, ...]]:
        """Fold the first occurrence of every id in `new_ids`; everything else is a duplicate."""
        if self.all_new is not None and len(new_ids) == len(self.events):
            return self.all_new  # new_ids are some of the distinct ids: all of them
        return _fold_new(self.events, new_ids)


@dataclass(slots=True)
class Batch:
    records: list[ConsumedRecord] = field(default_factory=list)
    log_end_offsets: dict[int, int] = field(default_factory=dict)
    _whole: tuple[dict[int, int], Fresh] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _next_offsets: dict[int, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def partitions(self) -> list[int]:
        return sorted({record.partition for record in self.records})

    def next_offsets(self) -> Mapping[int, int]:
        """Per partition: one past the highest offset in the batch. Computed once (the loop
        and the store each ask)."""
        if self._next_offsets is None:
            self._next_offsets = highest_offsets((p, offset + 1) for p, offset, _ in self.records)
        return self._next_offsets

    def whole(self) -> tuple[dict[int, int], Fresh] | None:
        """Where each partition's records start, and all of them as `Fresh`: what a commit
        folds when the stored offsets are those starts (the usual case). None when a partition
        has a gap (the commit then finds which records are fresh, or refuses the gap).
        Computed once: the fold loop asks while the previous batch commits."""
        if self._whole is None:
            records = sorted(self.records, key=_POSITION)
            starts: dict[int, int] = {}
            expected: dict[int, int] = {}
            for partition, offset, _ in records:
                if expected.setdefault(partition, offset) != offset:
                    return None
                starts.setdefault(partition, offset)
                expected[partition] = offset + 1
            self._whole = starts, Fresh.of(records, 0, ahead=True)
        return self._whole


def decode(partition: int, offset: int, value: bytes | None) -> ConsumedRecord:
    try:
        item: TransactionRecorded | Poison = deserialize(value)
    except EventDecodeError as err:
        item = Poison(reason=str(err), payload=value)
    return ConsumedRecord(partition, offset, item)


_POSITION = itemgetter(0, 1)  # (partition, offset) of a ConsumedRecord, at C speed


def fresh_part(batch: Batch, stored: Mapping[int, int]) -> Fresh:
    """The records at or past the stored offsets (see `_fresh_records`)."""
    whole = batch.whole()
    if whole is not None and all(stored.get(p, 0) == start for p, start in whole[0].items()):
        return whole[1]
    return Fresh.of(*_fresh_records(batch, stored))


def _fresh_records(batch: Batch, stored: Mapping[int, int]) -> tuple[list[ConsumedRecord], int]:
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


def _events_of(records: Iterable[ConsumedRecord]) -> list[tuple[int, TransactionRecorded]]:
    return [(r.partition, r.item) for r in records if isinstance(r.item, TransactionRecorded)]


def _poison_of(records: Iterable[ConsumedRecord]) -> list[tuple[int, int, Poison]]:
    return [(r.partition, r.offset, r.item) for r in records if isinstance(r.item, Poison)]


def _fold_new(
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


def _first_columns(records: Sequence[ConsumedRecord]) -> FirstColumns | None:
    """The first occurrence of every transaction id in `records`, as columns for one set-based
    insert (transposed with `zip`, at C speed: this runs for every batch); None when there is
    no event."""
    events = [r for r in records if type(r[2]) is TransactionRecorded]
    if not events:
        return None
    partitions, offsets, items = zip(*events, strict=True)
    _, ids, amounts, occurred, recorded, producers = zip(*items, strict=True)
    columns: FirstColumns = (ids, partitions, offsets, amounts, occurred, recorded, producers)
    if len(set(ids)) == len(ids):
        return columns
    first: dict[str, int] = {}
    for index, tx in enumerate(ids):
        first.setdefault(tx, index)
    keep = sorted(first.values())
    return (
        [ids[i] for i in keep],
        [partitions[i] for i in keep],
        [offsets[i] for i in keep],
        [amounts[i] for i in keep],
        [occurred[i] for i in keep],
        [recorded[i] for i in keep],
        [producers[i] for i in keep],
    )
