"""`InMemoryProjectionReader`: the projection's tables as dictionaries, for tests.

It stores rows the way the PostgreSQL tables do (per version: partition totals, second and
minute buckets of each partition, the transactions by (producer, id), plus the active version)
and merges them the way the SQL does; the reader contract suite keeps the two in step.
`record` folds one event the way the projector would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from query_api.errors import ProjectionUnavailableError
from query_api.ports import (
    MAX_LISTED_CONFLICTS,
    BucketRange,
    PartitionPosition,
    Snapshot,
    TransactionLookup,
    TransactionRecord,
)
from shared.projection import SECONDS_PER_MINUTE, TransactionKey
from shared.totals import Totals

LEGACY = ""  # the producer of a transaction stored before producers were recorded


@dataclass(frozen=True, slots=True)
class PartitionRow:
    next_offset: int = 0
    log_end_offset: int = 0
    totals: Totals = field(default_factory=Totals)


class InMemoryProjectionReader:
    def __init__(self, *, active_version: int = 1) -> None:
        self.active_version = active_version
        self.partitions: dict[int, dict[int, PartitionRow]] = {}
        self.seconds: dict[int, dict[tuple[int, int], Totals]] = {}  # (partition, bucket)
        self.minutes: dict[int, dict[tuple[int, int], Totals]] = {}
        self.transactions: dict[int, dict[TransactionKey, TransactionRecord]] = {}
        self.unavailable = False  # set to simulate a store that does not answer
        self.reads = 0

    # -- seeding, the way rows land in the tables ------------------------------------------

    def put_partition(self, partition: int, row: PartitionRow, *, version: int = 1) -> None:
        self.partitions.setdefault(version, {})[partition] = row

    def put_second(
        self, bucket: int, totals: Totals, *, partition: int = 0, version: int = 1
    ) -> None:
        self.seconds.setdefault(version, {})[(partition, bucket)] = totals

    def put_minute(
        self, bucket: int, totals: Totals, *, partition: int = 0, version: int = 1
    ) -> None:
        self.minutes.setdefault(version, {})[(partition, bucket)] = totals

    def record(
        self,
        *,
        partition: int,
        amount: Decimal,
        event_second: int,
        version: int | None = None,
    ) -> None:
        """Fold one event at the partition's next offset (what the projector does)."""
        version = self.active_version if version is None else version
        one = Totals.of(amount)
        rows = self.partitions.setdefault(version, {})
        row = rows.get(partition, PartitionRow())
        offset = row.next_offset + 1
        rows[partition] = PartitionRow(
            next_offset=offset,
            log_end_offset=max(row.log_end_offset, offset),
            totals=row.totals.merge(one),
        )
        seconds = self.seconds.setdefault(version, {})
        second = (partition, event_second)
        seconds[second] = seconds.get(second, Totals()).merge(one)
        minute = (partition, event_second // SECONDS_PER_MINUTE)
        minutes = self.minutes.setdefault(version, {})
        minutes[minute] = minutes.get(minute, Totals()).merge(one)

    def put_transaction(self, record: TransactionRecord, *, version: int = 1) -> None:
        """A `seen_transactions` row with its `transaction_conflicts` rows (all of them), under
        the counted occurrence's producer (none: stored before producers were recorded)."""
        producer = LEGACY if record.counted is None else record.counted.producer
        self.transactions.setdefault(version, {})[(producer, record.transaction_id)] = record

    def set_log_end(self, partition: int, log_end_offset: int, *, version: int = 1) -> None:
        rows = self.partitions.setdefault(version, {})
        row = rows.get(partition, PartitionRow())
        rows[partition] = replace(row, log_end_offset=log_end_offset)

    # -- the ProjectionReader port ---------------------------------------------------------

    async def all_time(self) -> Snapshot:
        self._answer()
        version = self.active_version
        totals = Totals()
        for row in self.partitions.get(version, {}).values():
            totals = totals.merge(row.totals)
        return Snapshot(version, totals, self._positions(version))

    async def window(self, buckets: BucketRange) -> Snapshot:
        self._answer()
        version = self.active_version
        totals = Totals()
        for (_, second), value in self.seconds.get(version, {}).items():
            if buckets.first_second <= second <= buckets.last_second:
                totals = totals.merge(value)
        for (_, minute), value in self.minutes.get(version, {}).items():
            if buckets.first_minute <= minute <= buckets.last_minute:
                totals = totals.merge(value)
        return Snapshot(version, totals, self._positions(version))

    async def ping(self) -> None:
        self._answer()

    async def transaction(self, producer: str, transaction_id: str) -> TransactionLookup:
        self._answer()
        version = self.active_version
        stored = self.transactions.get(version, {})
        record = stored.get((producer, transaction_id), stored.get((LEGACY, transaction_id)))
        if record is not None:
            listed = sorted(record.conflicts, key=lambda o: (o.partition, o.offset))
            record = replace(record, conflicts=tuple(listed[:MAX_LISTED_CONFLICTS]))
        return TransactionLookup(version, record, self._positions(version))

    def _answer(self) -> None:
        if self.unavailable:
            msg = "the in-memory projection is switched off"
            raise ProjectionUnavailableError(msg)
        self.reads += 1

    def _positions(self, version: int) -> tuple[PartitionPosition, ...]:
        rows = self.partitions.get(version, {})
        return tuple(
            PartitionPosition(p, rows[p].next_offset, rows[p].log_end_offset) for p in sorted(rows)
        )
