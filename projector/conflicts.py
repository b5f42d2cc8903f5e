"""Repeated transaction ids: a plain retry (same payload) or a conflict (a different one).

The first occurrence of an id in the log is the counted one, and it is stored with its payload
(amount, occurred_at) and position. A later occurrence with the same payload is a duplicate,
silently skipped; one whose amount or `occurred_at` differs is a **conflict**: still not
counted, but recorded with both payloads, partitions, offsets and producers. Pure: no I/O.

Which occurrence is "first" is decided in fold order: within one partition (the normal case,
the id is the message key) that is the lowest offset, so a rebuild finds exactly the same
conflicts; across partitions (a changed partition count, a foreign producer with its own
keys) it is whichever the projector folded first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from projector.batch import ConsumedRecord
from shared.events import TransactionRecorded
from shared.projection import Occurrence

logger = logging.getLogger(__name__)


class Conflict(NamedTuple):
    transaction_id: str
    first: Occurrence
    repeat: Occurrence


@dataclass(slots=True)
class Repeats:
    """What one batch's repeated ids were: per id, how many repeats and how many conflicts,
    and the conflicts themselves in log order."""

    duplicates: dict[str, int] = field(default_factory=dict)
    conflict_counts: dict[str, int] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)


def first_occurrences(records: Iterable[ConsumedRecord]) -> dict[str, Occurrence]:
    """The first occurrence of every transaction id in `records` (in their order)."""
    first: dict[str, Occurrence] = {}
    for partition, offset, item in records:
        if isinstance(item, TransactionRecorded) and item.transaction_id not in first:
            first[item.transaction_id] = Occurrence.of(partition, offset, item)
    return first


def classify_repeats(
    records: Iterable[ConsumedRecord],
    new_ids: set[str],
    stored: Mapping[str, Occurrence | None],
) -> Repeats:
    """Every occurrence in `records` that is not the counted one, classified.

    `new_ids` are the ids first seen in this batch (their first occurrence in `records` is
    counted); `stored` gives the counted occurrence of every other id, or None when it was
    stored without its payload (before conflicts were recorded: a plain duplicate then)."""
    repeats = Repeats()
    counted: dict[str, Occurrence | None] = dict(stored)
    for partition, offset, item in records:
        if not isinstance(item, TransactionRecorded):
            continue
        tx = item.transaction_id
        occurrence = Occurrence.of(partition, offset, item)
        if tx in new_ids and tx not in counted:
            counted[tx] = occurrence
            continue
        repeats.duplicates[tx] = repeats.duplicates.get(tx, 0) + 1
        first = counted.get(tx)
        if first is not None and not first.same_payload(occurrence):
            repeats.conflict_counts[tx] = repeats.conflict_counts.get(tx, 0) + 1
            repeats.conflicts.append(Conflict(tx, first, occurrence))
    return repeats


def log_conflicts(conflicts: Iterable[Conflict], *, version: int) -> None:
    for conflict in conflicts:
        first, repeat = conflict.first, conflict.repeat
        logger.warning(
            "conflicting duplicate transaction id: the first occurrence stays counted",
            extra={
                "version": version,
                "transaction_id": conflict.transaction_id,
                "counted_partition": first.partition,
                "counted_offset": first.offset,
                "counted_amount": str(first.amount),
                "counted_occurred_at": first.occurred_at.isoformat(),
                "counted_producer": first.producer,
                "partition": repeat.partition,
                "offset": repeat.offset,
                "amount": str(repeat.amount),
                "occurred_at": repeat.occurred_at.isoformat(),
                "producer": repeat.producer,
            },
        )
