"""`InMemoryRecordSource`: a log of records per partition, for unit tests of the fold loop.

A test appends records, rebalances the one group member, makes the next fetches fail, holds
the offset reports in flight (as a slow group coordinator would), or moves a read position
under the loop's feet (as a lost seek would); the source behaves like
the Kafka adapter behind the same port (tests/integration/test_record_source_contract.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from projector.errors import SourceUnavailable
from projector.ports import Fetched, RebalanceHandler


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    offset: int
    value: bytes | None
    timestamp: datetime | None = None


class InMemoryRecordSource:
    def __init__(self, partitions: int = 6) -> None:
        self.log: dict[int, list[MemoryRecord]] = {p: [] for p in range(partitions)}
        self.positions: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.fetches = 0
        self.seeks: list[tuple[int, int]] = []
        self.rebalances: list[tuple[str, list[int]]] = []  # each handler call, once it returned
        self._handler: RebalanceHandler | None = None
        self._rebalance_to: list[int] | None = None
        self._failures: list[SourceUnavailable | None] = []  # None: that fetch works
        self._appended = asyncio.Event()
        self._reports = asyncio.Event()
        self._reports.set()

    # -- what a test does -------------------------------------------------------------------

    def append(
        self, partition: int, value: bytes | None, *, timestamp: datetime | None = None
    ) -> int:
        """Append a record; returns its offset."""
        records = self.log[partition]
        records.append(MemoryRecord(len(records), value, timestamp))
        self._appended.set()
        return len(records) - 1

    def rebalance(self, assigned: Sequence[int]) -> None:
        """The group moves: the next fetch revokes what is assigned, then assigns `assigned`."""
        self._rebalance_to = list(assigned)
        self._appended.set()

    def wake(self) -> None:
        """End a fetch that waits for records (as its timeout would)."""
        self._appended.set()

    def fail_next_fetches(
        self, count: int, reason: str = "the log is down", *, after: int = 0
    ) -> None:
        """Fail `count` fetches, once `after` more have worked."""
        self._failures.extend([None] * after)
        self._failures.extend(SourceUnavailable(reason) for _ in range(count))

    def hold_offset_reports(self) -> None:
        """Offset reports wait (in flight) until `release_offset_reports`."""
        self._reports.clear()

    def release_offset_reports(self) -> None:
        self._reports.set()

    def move(self, partition: int, offset: int) -> None:
        """Set a read position without the loop asking (a seek that did not happen)."""
        self.positions[partition] = offset

    # -- the RecordSource port ----------------------------------------------------------------

    def subscribe(self, handler: RebalanceHandler) -> None:
        self._handler = handler
        self._rebalance_to = sorted(self.log)

    def assign(self, partitions: Sequence[int]) -> None:
        self.positions = {p: self.positions.get(p, 0) for p in partitions}

    def assignment(self) -> list[int]:
        return sorted(self.positions)

    def seek(self, partition: int, offset: int) -> None:
        if partition not in self.positions:
            msg = f"partition {partition} is not assigned"
            raise ValueError(msg)
        self.seeks.append((partition, offset))
        self.positions[partition] = offset

    async def fetch(self, *, timeout_ms: int, max_records: int) -> Fetched:
        self.fetches += 1
        failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise failure
        await self._apply_rebalance()
        fetched = self._take(max_records)
        if not fetched.records:
            self._appended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._appended.wait(), timeout_ms / 1000)
            await self._apply_rebalance()
            fetched = self._take(max_records)
        return fetched

    async def partitions(self) -> list[int]:
        return sorted(self.log)

    async def end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        return {p: len(self.log[p]) for p in partitions}

    async def offsets_at(self, moment: datetime, partitions: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in partitions:
            hits = (r.offset for r in self.log[p] if r.timestamp and r.timestamp >= moment)
            out[p] = next(hits, len(self.log[p]))
        return out

    async def commit_offsets(self, offsets: Mapping[int, int]) -> None:
        await self._reports.wait()
        if self._handler is not None:
            self.committed.update(offsets)

    # -- inside -------------------------------------------------------------------------------

    async def _apply_rebalance(self) -> None:
        assigned, self._rebalance_to = self._rebalance_to, None
        if assigned is None or self._handler is None:
            return
        revoked = sorted(self.positions)  # empty on joining, as Kafka's first rebalance
        await self._handler.partitions_revoked(revoked)
        self.rebalances.append(("revoked", revoked))
        self.positions = dict.fromkeys(assigned, 0)  # like auto_offset_reset=earliest
        await self._handler.partitions_assigned(assigned)
        self.rebalances.append(("assigned", list(assigned)))

    def _take(self, max_records: int) -> Fetched:
        records: dict[int, list[MemoryRecord]] = {}
        left = max_records
        for partition, position in sorted(self.positions.items()):
            taken = self.log[partition][position : position + left]
            if taken:
                records[partition] = taken
                self.positions[partition] = position + len(taken)
                left -= len(taken)
            if not left:
                break
        return Fetched(records=records, log_end={p: len(self.log[p]) for p in records})
