"""In-memory `ProjectionStore`: the fake behind the same port, for unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from projector.batch import Batch, events_of, fold_new, fresh_records, poison_of
from projector.conflicts import Conflict, Occurrence, classify_repeats, first_occurrences
from projector.errors import VersionChangedError
from projector.fold import EMPTY, Totals
from projector.ports import CommitResult


@dataclass(slots=True)
class SeenRow:
    """A `seen_transactions` row: the counted occurrence (None: stored without its payload,
    as before migration 002) and how many repeats / conflicting repeats followed it."""

    counted: Occurrence | None
    duplicates: int = 0
    conflicts: int = 0


@dataclass(slots=True)
class VersionState:
    offsets: dict[int, int] = field(default_factory=dict)
    log_end: dict[int, int] = field(default_factory=dict)
    partitions: dict[int, Totals] = field(default_factory=dict)
    seconds: dict[int, Totals] = field(default_factory=dict)
    minutes: dict[int, Totals] = field(default_factory=dict)
    seen: dict[str, SeenRow] = field(default_factory=dict)
    conflicts: dict[tuple[str, int, int], Conflict] = field(default_factory=dict)
    poison: dict[tuple[int, int], str] = field(default_factory=dict)

    def totals(self) -> Totals:
        out = EMPTY
        for totals in self.partitions.values():
            out = out.merge(totals)
        return out


def _merge_into(target: dict[int, Totals], delta: dict[int, Totals]) -> None:
    for key, totals in delta.items():
        target[key] = target.get(key, EMPTY).merge(totals)


class InMemoryProjectionStore:
    def __init__(self) -> None:
        self.active = 1
        self.versions: dict[int, VersionState] = {1: VersionState()}
        self._lock = asyncio.Lock()

    async def active_version(self) -> int:
        return self.active

    async def stored_offsets(self, version: int, partitions: Sequence[int]) -> dict[int, int]:
        state = self.versions.get(version, VersionState())
        return {partition: state.offsets.get(partition, 0) for partition in partitions}

    async def totals(self, version: int) -> Totals:
        return self.versions.get(version, VersionState()).totals()

    async def commit(self, version: int, batch: Batch, *, live: bool) -> CommitResult:
        async with self._lock:
            if live and version != self.active:
                raise VersionChangedError(self.active)
            state = self.versions.setdefault(version, VersionState())
            stored = {p: state.offsets.get(p, 0) for p in batch.partitions}
            fresh, stale = fresh_records(batch, stored)
            events = events_of(fresh)
            first = first_occurrences(fresh)
            new_ids = {tx for tx in first if tx not in state.seen}
            delta, folded = fold_new(events, new_ids)
            repeats = classify_repeats(
                fresh, new_ids, {tx: state.seen[tx].counted for tx in first if tx in state.seen}
            )
            for tx in new_ids:
                state.seen[tx] = SeenRow(first[tx])
            for tx, count in repeats.duplicates.items():
                state.seen[tx].duplicates += count
                state.seen[tx].conflicts += repeats.conflict_counts.get(tx, 0)
            for conflict in repeats.conflicts:
                key = (conflict.transaction_id, conflict.repeat.partition, conflict.repeat.offset)
                state.conflicts.setdefault(key, conflict)
            _merge_into(state.partitions, delta.partitions)
            _merge_into(state.seconds, delta.seconds)
            _merge_into(state.minutes, delta.minutes)
            poison = poison_of(fresh)
            for partition, offset, item in poison:
                state.poison[(partition, offset)] = item.reason
            for partition, next_offset in batch.next_offsets().items():
                state.offsets[partition] = max(stored[partition], next_offset)
            for partition, end in batch.log_end_offsets.items():
                state.log_end[partition] = max(state.log_end.get(partition, 0), end)
            return CommitResult(
                folded=folded,
                duplicates=len(events) - len(folded),
                stale=stale,
                poison=len(poison),
                conflicts=tuple(repeats.conflicts),
            )
