"""In-memory `ProjectionStore` and `VersionCatalog`: the fakes behind the same ports, for unit
tests. The contract suites in tests/integration run them beside the PostgreSQL adapters.

A transaction offers the same steps as PostgreSQL's and nothing more: it stages what they
write and applies it when the body returns, so a failed commit leaves nothing behind.

A test can make the next commits fail (`fail_next_commits`), hold commits at the door
(`hold_commits` / `release_commits`) to see what the fold loop does meanwhile, or make the
store refuse some occurrences (`refuse`, as a CHECK constraint would).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TypeVar

from projector.conflicts import Conflict, Repeats
from projector.errors import RebuildLockedError, RecordRefusedError, StoreUnavailable
from projector.fold import Bucket, Delta, FirstColumns
from projector.ports import LockedPartitions, VersionInfo
from projector.records import Poison
from shared.offsets import highest_offsets
from shared.projection import ALL_PARTITIONS, SECONDS_PER_MINUTE, Occurrence, TransactionKey
from shared.totals import Totals

K = TypeVar("K")

LEGACY = ""  # the producer of ids stored before producers were recorded (migration 005)


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
    seconds: dict[Bucket, Totals] = field(default_factory=dict)
    minutes: dict[Bucket, Totals] = field(default_factory=dict)
    seen: dict[TransactionKey, SeenRow] = field(default_factory=dict)
    conflicts: dict[tuple[str, str, int, int], Conflict] = field(default_factory=dict)
    poison: dict[tuple[int, int], str] = field(default_factory=dict)
    legacy_ids: bool = False  # `seen` may hold ids stored without a producer (producer '')

    def totals(self) -> Totals:
        out = Totals()
        for totals in self.partitions.values():
            out = out.merge(totals)
        return out


def _merge_into(target: dict[K, Totals], delta: Mapping[K, Totals]) -> None:
    for key, totals in delta.items():
        target[key] = target.get(key, Totals()).merge(totals)


class InMemoryProjectionStore:
    def __init__(self) -> None:
        self.active = 1
        self.versions: dict[int, VersionState] = {1: VersionState(state="active")}
        self.commits_started = 0
        # A live commit holds the active version still, as FOR SHARE does in PostgreSQL.
        self.active_lock = asyncio.Lock()
        # One writer per version at a time, as the partition row locks make it in PostgreSQL.
        self._write_locks: dict[int, asyncio.Lock] = {}
        self._door = asyncio.Event()
        self._door.set()
        self._knocked = asyncio.Event()
        self._failures: list[StoreUnavailable] = []
        self._read_failures: list[StoreUnavailable] = []
        self._refused: Callable[[Occurrence], bool] = lambda _: False

    # -- what a test does -------------------------------------------------------------------

    def fail_next_commits(self, count: int, reason: str = "the store is down") -> None:
        self._failures.extend(StoreUnavailable(reason) for _ in range(count))

    def fail_next_reads(self, count: int, reason: str = "the store is down") -> None:
        """The next `count` reads of offsets fail (e.g. the seek on an assignment)."""
        self._read_failures.extend(StoreUnavailable(reason) for _ in range(count))

    def refuse(self, refused: Callable[[Occurrence], bool]) -> None:
        """Refuse to store the occurrences `refused` picks, as a constraint would."""
        self._refused = refused

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

    async def lag(self, version: int) -> int:
        state = self.versions.get(version, VersionState())
        return sum(max(0, end - state.offsets.get(p, 0)) for p, end in state.log_end.items())

    async def roll_up(self, version: int, *, start: int, before: int) -> int | None:
        minutes = (start // SECONDS_PER_MINUTE, before // SECONDS_PER_MINUTE)
        moved = 0
        async with self.write_lock(version):  # between commits, as a commit's working copy
            state = self.versions.get(version, VersionState())
            for buckets, (first, end) in (
                (state.seconds, (start, before)),
                (state.minutes, minutes),
            ):
                for partition, bucket in [k for k in buckets if k[0] >= 0 and first <= k[1] < end]:
                    totals = buckets.pop((partition, bucket))
                    merged = (ALL_PARTITIONS, bucket)
                    buckets[merged] = buckets.get(merged, Totals()).merge(totals)
                    moved += 1
        return moved

    @asynccontextmanager
    async def transaction(self, version: int) -> AsyncIterator[InMemoryProjectionTransaction]:
        self.commits_started += 1
        if not self._door.is_set():
            self._knocked.set()
            await self._door.wait()
        if self._failures:
            raise self._failures.pop(0)
        async with AsyncExitStack() as locks:
            tx = InMemoryProjectionTransaction(self, version, locks)
            yield tx
            tx.commit()

    def write_lock(self, version: int) -> asyncio.Lock:
        return self._write_locks.setdefault(version, asyncio.Lock())

    def refused(self, occurrence: Occurrence) -> bool:
        return self._refused(occurrence)


class InMemoryProjectionTransaction:
    """The steps of `ProjectionTransaction` over a working copy of the version, taken when the
    partitions are locked (as PostgreSQL's row locks order writers) and put in place by
    `commit`: reads see this transaction's writes, others see none of them before."""

    def __init__(self, store: InMemoryProjectionStore, version: int, locks: AsyncExitStack) -> None:
        self._store = store
        self._version = version
        self._locks = locks
        self._working: VersionState | None = None

    async def active_version(self) -> int:
        await self._locks.enter_async_context(self._store.active_lock)
        return self._store.active

    async def lock_partitions(self, partitions: Sequence[int]) -> LockedPartitions:
        if self._working is None:
            await self._locks.enter_async_context(self._store.write_lock(self._version))
            state = self._store.versions.get(self._version, VersionState())
            self._working = replace(
                state,
                offsets=dict(state.offsets),
                log_end=dict(state.log_end),
                partitions=dict(state.partitions),
                seconds=dict(state.seconds),
                minutes=dict(state.minutes),
                seen=dict(state.seen),
                conflicts=dict(state.conflicts),
                poison=dict(state.poison),
            )
        offsets = {p: self._working.offsets.get(p, 0) for p in partitions}
        return LockedPartitions(offsets, self._working.legacy_ids)

    async def insert_first_occurrences(
        self, first: FirstColumns, *, legacy_ids: bool
    ) -> set[TransactionKey]:
        working = self._state()
        new: dict[TransactionKey, Occurrence] = {}
        before: set[TransactionKey] = set()
        for tx, partition, offset, amount, occurred, recorded, producer in zip(*first, strict=True):
            occurrence = Occurrence(partition, offset, amount, occurred, recorded, producer)
            if self._store.refused(occurrence):
                msg = f"{producer}/{tx}: refused by a constraint"
                raise RecordRefusedError(msg)
            if (producer, tx) in working.seen or (legacy_ids and (LEGACY, tx) in working.seen):
                before.add((producer, tx))
            else:
                new[(producer, tx)] = occurrence
        working.seen.update((key, SeenRow(occurrence)) for key, occurrence in new.items())
        return before

    async def counted_occurrences(
        self, keys: Sequence[TransactionKey]
    ) -> dict[TransactionKey, Occurrence | None]:
        seen = self._state().seen
        rows = {key: seen.get(key) or seen.get((LEGACY, key[1])) for key in keys}
        return {key: row.counted for key, row in rows.items() if row is not None}

    async def record_repeats(self, repeats: Repeats) -> None:
        working = self._state()
        for repeated, count in repeats.duplicates.items():
            key = repeated if repeated in working.seen else (LEGACY, repeated[1])
            row = working.seen[key]
            working.seen[key] = SeenRow(
                row.counted,
                row.duplicates + count,
                row.conflicts + repeats.conflict_counts.get(repeated, 0),
            )
        for conflict in repeats.conflicts:
            repeat = conflict.repeat
            position = (repeat.producer, conflict.transaction_id, repeat.partition, repeat.offset)
            working.conflicts.setdefault(position, conflict)

    async def apply(
        self,
        delta: Delta,
        *,
        next_offsets: Mapping[int, int],
        log_end: Mapping[int, int],
        poison: Sequence[tuple[int, int, Poison]],
    ) -> None:
        working = self._state()
        _merge_into(working.partitions, delta.partitions)
        _merge_into(working.seconds, delta.seconds)
        _merge_into(working.minutes, delta.minutes)
        for partition, offset, item in poison:
            working.poison.setdefault((partition, offset), item.reason)
        highest_offsets(next_offsets.items(), working.offsets)
        highest_offsets(log_end.items(), working.log_end)
        highest_offsets(working.offsets.items(), working.log_end)

    async def notify(self, next_offsets: Mapping[int, int]) -> None:
        return None  # nobody listens to the in-memory store

    def commit(self) -> None:
        if self._working is not None:
            self._store.versions[self._version] = self._working

    def _state(self) -> VersionState:
        assert self._working is not None, "lock the partitions first, as a commit does"
        return self._working


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
                legacy_ids=state.legacy_ids,
            )
            for version, state in sorted(self._store.versions.items())
        ]
