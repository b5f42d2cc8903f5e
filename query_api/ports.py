"""The query API's ports and the values that cross them.

`ProjectionReader` is what the read side reads the projection through:
`PostgresProjectionReader` in production, `InMemoryProjectionReader` (tests/doubles/) in tests;
one contract test suite (tests/integration/test_query_reader_contract.py) runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.projection import Occurrence
from shared.totals import Totals

Clock = Callable[[], float]
"""Wall-clock time in epoch seconds (`time.time` in production, a fixed value in tests)."""

StatsKind = Literal["all_time", "window", "consistency"]
WaitOutcome = Literal["hit", "timeout"]


@dataclass(frozen=True, slots=True)
class PartitionPosition:
    """How far the projection has folded one partition, and how far the log was."""

    partition: int
    next_offset: int
    log_end_offset: int

    @property
    def lag(self) -> int:
        return max(0, self.log_end_offset - self.next_offset)


@dataclass(frozen=True, slots=True)
class ProjectionPosition:
    """The next offset to consume per partition of one projection version."""

    version: int
    offsets: Mapping[int, int] = field(default_factory=dict)

    @staticmethod
    def of(version: int, positions: Iterable[PartitionPosition]) -> ProjectionPosition:
        return ProjectionPosition(version, {p.partition: p.next_offset for p in positions})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read returned: totals and positions of the same version, read atomically."""

    version: int
    totals: Totals
    positions: tuple[PartitionPosition, ...] = ()

    @property
    def position(self) -> ProjectionPosition:
        return ProjectionPosition.of(self.version, self.positions)


@dataclass(frozen=True, slots=True)
class BucketRange:
    """The bucket rows a window read merges, both ranges inclusive (empty when first > last):
    second buckets (epoch seconds) and minute buckets (epoch second div 60)."""

    first_second: int
    last_second: int
    first_minute: int
    last_minute: int

    @property
    def rows(self) -> int:
        """The most bucket rows a read of this range can touch."""
        seconds = max(0, self.last_second - self.first_second + 1)
        return seconds + max(0, self.last_minute - self.first_minute + 1)


class ProjectionReader(Protocol):
    """Reads the active projection version. Every method reads one consistent snapshot and
    raises `ProjectionUnavailableError` when the store does not answer."""

    async def all_time(self) -> Snapshot:
        """Totals merged over the partitions of the active version (at most one row each)."""
        ...

    async def window(self, buckets: BucketRange) -> Snapshot:
        """Totals merged over the given buckets of the active version, with its positions."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise otherwise."""
        ...

    async def transaction(self, producer: str, transaction_id: str) -> TransactionLookup:
        """One transaction, (producer, transaction_id), in the active version (its
        `seen_transactions` row by primary key, at most `MAX_LISTED_CONFLICTS` of its
        conflicts), with the version's positions. An id stored before producers were recorded
        (migration 005: producer '') is found for any producer, without its payload."""
        ...


MAX_LISTED_CONFLICTS = 100


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """What the projection knows of one transaction. `counted` is None for an id stored
    before payloads (and producers) were kept (migration 003); `duplicates` counts every later
    occurrence, `conflict_count` those with another amount or occurred_at, listed (the first
    `MAX_LISTED_CONFLICTS`, in log order) in `conflicts`: all of the same producer."""

    transaction_id: str
    counted: Occurrence | None
    duplicates: int = 0
    conflict_count: int = 0
    conflicts: tuple[Occurrence, ...] = ()


@dataclass(frozen=True, slots=True)
class TransactionLookup:
    """One read: the record (None when the id was never folded) and the positions of the
    same version, read atomically."""

    version: int
    record: TransactionRecord | None
    positions: tuple[PartitionPosition, ...] = ()

    @property
    def position(self) -> ProjectionPosition:
        return ProjectionPosition.of(self.version, self.positions)


class StatsMetrics(Protocol):
    def stats_request(self, kind: StatsKind) -> None: ...

    def consistency_wait(self, outcome: WaitOutcome, seconds: float) -> None: ...


class StreamMetrics(Protocol):
    def stream_clients(self, count: int) -> None: ...

    def stream_read(self, window: int | None) -> None:
        """One snapshot read for the streams of `window` (seconds; None: all-time)."""
        ...

    def stream_dropped(self) -> None: ...
