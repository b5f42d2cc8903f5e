"""In-memory `ProjectionStore` and `VersionCatalog`: the fakes behind the same ports, for unit
tests. The contract suites in tests/integration run them beside the PostgreSQL adapters.

A test can make the next commits fail (`fail_next_commits`) or hold commits at the door
(`hold_commits` / `release_commits`) to see what the fold loop does meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from projector.batch import Batch, fresh_part
from projector.conflicts import Conflict, classify_repeats, first_occurrences
from projector.errors import RebuildLockedError, StoreUnavailable, VersionChangedError
from projector.ports import CommitResult, VersionInfo
from shared.offsets import highest_offsets
from shared.projection import Occurrence
from shared.totals import Totals


@dataclass(slots=True)
class SeenRow:
    """A `seen_transactions` row: the counted occurrence (None: stored without its payload,
    as before migration 003) and how many repeats / conflicting repeats followed it."""

    counted: Occurrence | None
    duplicates: int = 0
    conflicts: int = 0


@dataclass(slots=True)
class VersionState:
    state: str = "building"
    until: str | None = None
    offsets: dict[int, int] = field(default_factory=dict)
    log_end: dict[int, int] = field(default_factory=dict)
    partitions: dict[int, Totals] = field(default_factory=dict)
    seconds: dict[int, Totals] = field(default_factory=dict)
    minutes: dict[int, Totals] = field(default_factory=dict)
    seen: dict[str, SeenRow] = field(default_factory=dict)
    conflicts: dict[tuple[str, int, int], Conflict] = field(default_factory=dict)
    poison: dict[tuple[int, int], str] = field(default_factory=dict)

    def totals(self) -> Totals:
        out = Totals()
        for totals in self.partitions.values():
            out = out.merge(totals)
        return out


def _merge_into(target: dict[int, Totals], delta: dict[int, Totals]) -> None:
    for key, totals in delta.items():
        target[key] = target.get(key, Totals()).merge(totals)


class InMemoryProjectionStore:
    def __init__(self) -> None:
        self.active = 1
        self.versions: dict[int, VersionState] = {1: VersionState(state="active")}
        self.commits_started = 0
        # A live commit holds the active version still, as FOR SHARE does in PostgreSQL.
        self.active_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._door = asyncio.Event()
        self._door.set()
        self._knocked = asyncio.Event()
        self._failures: list[StoreUnavailable] = []
        self._read_failures: list[StoreUnavailable] = []

    # -- what a test does -------------------------------------------------------------------

    def fail_next_commits(self, count: int, reason: str = "the store is down") -> None:
        self._failures.extend(StoreUnavailable(reason) for _ in range(count))

    def fail_next_reads(self, count: int, reason: str = "the store is down") -> None:
        """The next `count` reads of offsets fail (e.g. the seek on an assignment)."""
        self._read_failures.extend(StoreUnavailable(reason) for _ in range(count))

    def hold_commits(self) -> None:
        self._door.clear()

    def release_commits(self) -> None:
        self._door.set()

    async def commit_waiting(self) -> None:
        """Return once a commit waits at the held door."""
        await self._knocked.wait()
        self._knocked.clear()

    # -- the ProjectionStore port -----------------------------------------------------------

    async def active_version(self) -> int:
        return self.active

    async def stored_offsets(self, version: int, partitions: Sequence[int]) -> dict[int, int]:
        if self._read_failures:
            raise self._read_failures.pop(0)
        state = self.versions.get(version, VersionState())
        return {partition: state.offsets.get(partition, 0) for partition in partitions}

    async def totals(self, version: int) -> Totals:
        return self.versions.get(version, VersionState()).totals()

    async def commit(self, version: int, batch: Batch, *, live: bool) -> CommitResult:
        self.commits_started += 1
        if not self._door.is_set():
            self._knocked.set()
            await self._door.wait()
        if self._failures:
            raise self._failures.pop(0)
        if not live:
            return await self._write(version, batch)
        async with self.active_lock:
            if version != self.active:
                raise VersionChangedError(self.active)
            return await self._write(version, batch)

    async def _write(self, version: int, batch: Batch) -> CommitResult:
        async with self._write_lock:
            state = self.versions.setdefault(version, VersionState())
            stored = {p: state.offsets.get(p, 0) for p in batch.partitions}
            fresh = fresh_part(batch, stored)
            first = first_occurrences(fresh.records)
            new_ids = {tx for tx in first if tx not in state.seen}
            delta, folded = fresh.fold(new_ids)
            repeats = classify_repeats(
                fresh.records,
                new_ids,
                {tx: state.seen[tx].counted for tx in first if tx in state.seen},
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
            for partition, offset, item in fresh.poison:
                state.poison[(partition, offset)] = item.reason
            highest_offsets(batch.next_offsets().items(), state.offsets)
            highest_offsets(batch.log_end_offsets.items(), state.log_end)
            highest_offsets(state.offsets.items(), state.log_end)
            return CommitResult(
                folded=folded,
                duplicates=len(fresh.events) - len(folded),
                stale=fresh.stale,
                poison=tuple(fresh.poison),
                conflicts=tuple(repeats.conflicts),
            )


class InMemoryActiveHold:
    def __init__(self, store: InMemoryProjectionStore) -> None:
        self._store = store
        self.active = store.active
        self.swapped_to: int | None = None

    async def offsets(self, version: int) -> dict[int, int]:
        return dict(self._store.versions[version].offsets)

    async def totals(self, version: int) -> Totals:
        return await self._store.totals(version)

    async def swap(self, new: int) -> None:
        self.swapped_to = new


class InMemoryVersionCatalog:
    """The versions of an `InMemoryProjectionStore`."""

    def __init__(self, store: InMemoryProjectionStore) -> None:
        self._store = store
        self._locked = False

    @asynccontextmanager
    async def rebuild_lock(self) -> AsyncIterator[None]:
        if self._locked:
            raise RebuildLockedError("another rebuild is running")
        self._locked = True
        try:
            yield
        finally:
            self._locked = False

    async def active(self) -> int:
        return self._store.active

    async def building(self, until: str | None) -> int | None:
        found = [
            v
            for v, s in self._store.versions.items()
            if s.state in {"building", "verified"} and s.until == until
        ]
        return max(found, default=None)

    async def create(self, until: str | None) -> int:
        version = max(self._store.versions) + 1
        self._store.versions[version] = VersionState(state="building", until=until)
        return version

    async def offsets(self, version: int) -> dict[int, int]:
        return dict(self._store.versions[version].offsets)

    async def mark_verified(self, version: int) -> None:
        self._store.versions[version].state = "verified"

    @asynccontextmanager
    async def holding_active(self) -> AsyncIterator[InMemoryActiveHold]:
        async with self._store.active_lock:
            hold = InMemoryActiveHold(self._store)
            yield hold
            if hold.swapped_to is not None:
                self._store.versions[hold.active].state = "retired"
                self._store.versions[hold.swapped_to].state = "active"
                self._store.active = hold.swapped_to

    async def drop(self, version: int) -> None:
        if version == self._store.active:
            msg = f"refusing to drop the active version {version}"
            raise ValueError(msg)
        del self._store.versions[version]

    async def describe(self) -> list[VersionInfo]:
        return [
            VersionInfo(
                version=version,
                state=state.state,
                until=state.until,
                offsets=dict(state.offsets),
                log_end=dict(state.log_end),
                count=state.totals().count,
            )
            for version, state in sorted(self._store.versions.items())
        ]
