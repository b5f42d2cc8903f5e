"""Repeated transactions: a plain retry (same payload) or a conflict (a different one).

A transaction is a key, (producer, transaction_id): a producer's ids are its own. The first
occurrence of a key in the log is the counted one, and it is stored with its payload (amount,
occurred_at) and position. A later occurrence with the same payload is a duplicate, silently
skipped; one whose amount or `occurred_at` differs is a **conflict**: still not counted, but
recorded with both payloads and positions. So a conflict is only ever within one producer.
Pure: no I/O.

Which occurrence is "first" is decided in fold order: a key's occurrences share a partition
(the message key is the transaction id), where the first is the lowest offset, so a rebuild
finds exactly the same conflicts; were they to land on two partitions (a changed partition
count), it is whichever the projector folded first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from projector.records import ConsumedRecord
from shared.events import TransactionRecorded
from shared.projection import Occurrence, TransactionKey


class Conflict(NamedTuple):
    transaction_id: str
    first: Occurrence
    repeat: Occurrence

    @property
    def key(self) -> TransactionKey:
        return (self.first.producer, self.transaction_id)


@dataclass(slots=True)
class Repeats:
    """What one batch's repeated keys were: per key, how many repeats and how many conflicts,
    and the conflicts themselves in log order."""

    duplicates: dict[TransactionKey, int] = field(default_factory=dict)
    conflict_counts: dict[TransactionKey, int] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)


def classify_repeats(
    records: Iterable[ConsumedRecord],
    new: set[TransactionKey],
    stored: Mapping[TransactionKey, Occurrence | None],
) -> Repeats:
    """Every occurrence in `records` that is not the counted one, classified.

    `new` are the keys first seen in this batch (their first occurrence in `records` is
    counted); `stored` gives the counted occurrence of every other key, or None when it was
    stored without its payload (before conflicts were recorded: a plain duplicate then)."""
    repeats = Repeats()
    counted: dict[TransactionKey, Occurrence | None] = dict(stored)
    for partition, offset, item in records:
        if not isinstance(item, TransactionRecorded):
            continue
        key = (item.producer, item.transaction_id)
        occurrence = Occurrence.of(partition, offset, item)
        if key in new and key not in counted:
            counted[key] = occurrence
            continue
        repeats.duplicates[key] = repeats.duplicates.get(key, 0) + 1
        first = counted.get(key)
        if first is not None and not first.same_payload(occurrence):
            repeats.conflict_counts[key] = repeats.conflict_counts.get(key, 0) + 1
            repeats.conflicts.append(Conflict(item.transaction_id, first, occurrence))
    return repeats
