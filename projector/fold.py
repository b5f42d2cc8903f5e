"""The pure fold: what the events of a batch add to the projection. No I/O.

A transaction is a key, (producer, transaction_id): the first occurrence of a key is counted,
every later one is a repeat. Per partition, and per partition and event-time bucket (one
second, one minute), a batch adds `Totals`, which merge in any order (`shared.totals`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from projector.records import ConsumedRecord, Poison
from shared.events import TransactionRecorded
from shared.projection import SECONDS_PER_MINUTE, TransactionKey
from shared.totals import Totals

Bucket = tuple[int, int]
"""(partition, epoch second or epoch minute): every bucket row belongs to one partition."""

FirstColumns = tuple[
    Sequence[str],
    Sequence[int],
    Sequence[int],
    Sequence[Decimal],
    Sequence[datetime],
    Sequence[datetime],
    Sequence[str],
]
"""Transaction ids, partitions, offsets, amounts, occurred_at, recorded_at, producers: the first
occurrence of every key of a batch, as columns for one set-based insert."""

Folded = tuple["Delta", tuple[TransactionRecorded, ...]]
"""What a fold adds, and the events it counted."""


def epoch_second(moment: datetime) -> int:
    return math.floor(moment.timestamp())  # the same floor as `int(t // 1)`, cheaper per event


@dataclass(slots=True)
class Delta:
    """What one batch adds: per-partition totals and per-bucket totals."""

    partitions: dict[int, Totals] = field(default_factory=dict)
    seconds: dict[Bucket, Totals] = field(default_factory=dict)
    minutes: dict[Bucket, Totals] = field(default_factory=dict)

    @staticmethod
    def of(by_second: Mapping[Bucket, list[Decimal]]) -> Delta:
        """Totals of amounts grouped by partition and event-time second."""
        by_minute: defaultdict[Bucket, list[Decimal]] = defaultdict(list)
        by_partition: defaultdict[int, list[Decimal]] = defaultdict(list)
        for (partition, second), amounts in by_second.items():  # list extends, at C speed
            by_minute[(partition, second // SECONDS_PER_MINUTE)] += amounts
            by_partition[partition] += amounts
        return Delta(
            Totals.of_groups(by_partition), Totals.of_groups(by_second), Totals.of_groups(by_minute)
        )


@dataclass(frozen=True, slots=True)
class Fold:
    """A batch's records in position order, their events and poison, the first occurrence of
    each key, and the fold as if every key were new: worked out once, ahead of the commit
    (while the previous batch commits), because keys are new almost always."""

    records: Sequence[ConsumedRecord]
    events: list[tuple[int, TransactionRecorded]]
    first: FirstColumns | None
    poison: list[tuple[int, int, Poison]]
    all_new: Folded | None  # None when a key repeats within the batch

    @staticmethod
    def of(records: Sequence[ConsumedRecord]) -> Fold:
        """`records` in position order."""
        events = [(r.partition, r.item) for r in records if isinstance(r.item, TransactionRecorded)]
        first = _first_columns(records)
        all_new = None
        if first is not None and len(first[0]) == len(events):
            all_new = _fold_new(events, None)
        poison = [(r.partition, r.offset, r.item) for r in records if isinstance(r.item, Poison)]
        return Fold(records, events, first, poison, all_new)

    def keys(self) -> list[TransactionKey]:
        """The key of each first occurrence, in the order of `first`."""
        first = self.first
        return [] if first is None else list(zip(first[6], first[0], strict=True))

    def fold_new(self, new: set[TransactionKey]) -> Folded:
        """Fold the first occurrence of every key in `new`; everything else is a repeat."""
        return _fold_new(self.events, new)


def _fold_new(
    events: Iterable[tuple[int, TransactionRecorded]], new: set[TransactionKey] | None
) -> Folded:
    """Fold the first occurrence of every key in `new` (None: every event, all distinct)."""
    by_second: defaultdict[Bucket, list[Decimal]] = defaultdict(list)
    folded: list[TransactionRecorded] = []
    pending = set() if new is None else set(new)
    for partition, event in events:
        if new is not None:
            key = (event.producer, event.transaction_id)
            if key not in pending:
                continue
            pending.discard(key)
        by_second[(partition, epoch_second(event.occurred_at))].append(event.amount)
        folded.append(event)
    return Delta.of(by_second), tuple(folded)


def _first_columns(records: Sequence[ConsumedRecord]) -> FirstColumns | None:
    """The first occurrence of every key in `records` (transposed with `zip`, at C speed: this
    runs for every batch); None when there is no event."""
    events = [r for r in records if type(r[2]) is TransactionRecorded]
    if not events:
        return None
    partitions, offsets, items = zip(*events, strict=True)
    _, ids, amounts, occurred, recorded, producers = zip(*items, strict=True)
    columns: FirstColumns = (ids, partitions, offsets, amounts, occurred, recorded, producers)
    if len(set(ids)) == len(ids):  # distinct ids: distinct keys, the usual case
        return columns
    first: dict[TransactionKey, int] = {}
    for index, key in enumerate(zip(producers, ids, strict=True)):
        first.setdefault(key, index)
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
