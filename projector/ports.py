"""The projector's ports: where records come from, where folded totals and consumed offsets
are stored together (in one transaction of steps), and the catalog of projection versions.

Adapters: `adapters/kafka_source.py`, `adapters/postgres_store.py`,
`adapters/postgres_catalog.py`; their in-memory doubles (`tests/doubles/memory_source.py`,
`tests/doubles/memory_store.py`) stand in for them in unit tests, and one contract suite per
port (tests/integration) runs against both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from projector.conflicts import Repeats
from projector.fold import Delta, FirstColumns
from projector.records import Poison
from shared.projection import Occurrence, TransactionKey
from shared.totals import Totals


class SourceRecord(Protocol):
    """One record of the log, as a source hands it out."""

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one fetch returned: records per partition (in offset order) and each partition's
    log end offset as the log reported it."""

    records: Mapping[int, Sequence[SourceRecord]] = field(default_factory=dict)
    log_end: Mapping[int, int] = field(default_factory=dict)


class RebalanceHandler(Protocol):
    async def partitions_revoked(self, partitions: Sequence[int]) -> None:
        """Called before partitions move to another member; they are read no more after it."""
        ...

    async def partitions_assigned(self, partitions: Sequence[int]) -> None:
        """Called when partitions arrive; the handler seeks them before the next fetch."""
        ...


class RecordSource(Protocol):
    """The event log, read by offset. Raises `SourceUnavailable` on transient failures."""

    def subscribe(self, handler: RebalanceHandler) -> None:
        """Read as a member of the consumer group; `handler` hears of every rebalance."""
        ...

    def assign(self, partitions: Sequence[int]) -> None:
        """Read these partitions, outside any group (the rebuild)."""
        ...

    def assignment(self) -> list[int]:
        """The partitions read now."""
        ...

    def seek(self, partition: int, offset: int) -> None:
        """The next fetch of `partition` starts at `offset`."""
        ...

    async def fetch(self, *, timeout_ms: int, max_records: int) -> Fetched:
        """Up to `max_records` records, waiting up to `timeout_ms` for the first ones."""
        ...

    async def partitions(self) -> list[int]:
        """Every partition of the topic."""
        ...

    async def end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """The offset the next record of each partition will get."""
        ...

    async def offsets_at(self, moment: datetime, partitions: Sequence[int]) -> dict[int, int]:
        """Per partition, the first offset whose record time is at or after `moment` (the end
        offset when there is none)."""
        ...

    async def commit_offsets(self, offsets: Mapping[int, int]) -> None:
        """Tell the log how far the group has folded, for monitoring tools only: positions
        always come from the store. Best effort: never raises."""
        ...


@dataclass(frozen=True, slots=True)
class LockedPartitions:
    """What locking a batch's partitions reads: their next offsets (0 for a partition never
    folded), and whether the version holds ids stored before producers were recorded
    (migration 005: producer '', claiming the id for every producer)."""

    offsets: dict[int, int]
    legacy_ids: bool = False


class ProjectionTransaction(Protocol):
    """One transaction of the store, opened by `ProjectionStore.transaction`: the steps a batch
    commit is made of, each a few set-based statements. It records; what to record is decided
    by `projector.commit.commit_batch`, which sequences them.

    Raises `StoreUnavailable` on transient failures, `RecordRefusedError` when the store
    refuses a value it was given (a data error: a record of the batch is the cause)."""

    async def active_version(self) -> int:
        """The active version, held still until this transaction ends (a swap waits)."""
        ...

    async def lock_partitions(self, partitions: Sequence[int]) -> LockedPartitions:
        """Lock the partitions' rows of the version (no other writer folds them until this
        transaction ends) and read them."""
        ...

    async def insert_first_occurrences(
        self, first: FirstColumns, *, legacy_ids: bool
    ) -> set[TransactionKey]:
        """Store each occurrence whose key is not stored yet, and return the keys that were
        (the others are new): almost always none, so the answer is small. With `legacy_ids`
        (as `lock_partitions` read it), a key whose id a legacy id claims was stored too."""
        ...

    async def counted_occurrences(
        self, keys: Sequence[TransactionKey]
    ) -> dict[TransactionKey, Occurrence | None]:
        """The stored occurrence of each key (None: stored without its payload)."""
        ...

    async def record_repeats(self, repeats: Repeats) -> None:
        """Add the repeat counts to the stored keys and store the conflicts."""
        ...

    async def apply(
        self,
        delta: Delta,
        *,
        next_offsets: Mapping[int, int],
        log_end: Mapping[int, int],
        poison: Sequence[tuple[int, int, Poison]],
    ) -> None:
        """Add `delta` to the partitions' totals and buckets, move each partition's next
        offset and log end up to these, store the poison records."""
        ...

    async def notify(self, next_offsets: Mapping[int, int]) -> None:
        """Tell readers how far the version has folded (delivered when this commits)."""
        ...


class ProjectionStore(Protocol):
    """Raises `StoreUnavailable` on transient failures."""

    async def active_version(self) -> int: ...

    async def stored_offsets(self, version: int, partitions: Sequence[int]) -> dict[int, int]:
        """Next offset to consume per partition (0 for a partition never folded)."""
        ...

    async def totals(self, version: int) -> Totals:
        """All-time totals of a version (merged over its partitions)."""
        ...

    async def lag(self, version: int) -> int:
        """Records between the stored offsets and the log ends the commits saw, summed over
        the version's partitions."""
        ...

    async def roll_up(self, version: int, *, start: int, before: int) -> int | None:
        """Move the buckets of every partition for event times in [`start`, `before`) (epoch
        seconds; minutes: those wholly before `before`) into one row per bucket, leaving
        alone the rows a commit is writing; return how many rows moved, or None when
        another roll-up is under way (there is one at a time)."""
        ...

    def transaction(self, version: int) -> AbstractAsyncContextManager[ProjectionTransaction]:
        """A transaction writing into `version`: it commits when the body returns, and rolls
        everything back when the body raises."""
        ...


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    state: str
    until: str | None
    offsets: dict[int, int]
    log_end: dict[int, int]
    count: int
    legacy_ids: bool = False  # see `LockedPartitions`; a rebuild replaces such a version


class ActiveHold(Protocol):
    """The active version held still: live commits wait until the hold ends (reads do not)."""

    @property
    def active(self) -> int: ...

    async def offsets(self, version: int) -> dict[int, int]: ...

    async def totals(self, version: int) -> Totals: ...

    async def swap(self, new: int) -> None:
        """Make `new` the active version and retire the old one, when the hold ends."""
        ...


class VersionCatalog(Protocol):
    """Projection versions: one active, others building or retired. Raises
    `StoreUnavailable` on transient failures."""

    def rebuild_lock(self) -> AbstractAsyncContextManager[None]:
        """Held for a whole rebuild; raises `RebuildLockedError` when another holds it."""
        ...

    async def active(self) -> int: ...

    async def building(self, until: str | None) -> int | None:
        """A version an interrupted rebuild or a dry run left with the same `until`, to
        resume."""
        ...

    async def create(self, until: str | None) -> int:
        """A new version, state `building`."""
        ...

    async def offsets(self, version: int) -> dict[int, int]: ...

    async def mark_verified(self, version: int) -> None:
        """A building version passed a dry run's verification; `building` still resumes it."""
        ...

    def holding_active(self) -> AbstractAsyncContextManager[ActiveHold]:
        """Whatever the body does not `swap` is left as it was."""
        ...

    async def drop(self, version: int) -> None:
        """Delete a version's rows (never the active one's)."""
        ...

    async def describe(self) -> list[VersionInfo]: ...
