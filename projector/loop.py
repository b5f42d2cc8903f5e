"""The fold loop: records from a `RecordSource` in, one `ProjectionStore.commit` per batch.

It knows no driver. Positions come from the store only: on start, on every assignment and
after every failed batch the loop seeks the source to the offsets stored with the
projection, so whatever crashes, the next batch starts exactly where the last committed one
ended. After each commit of the live projection it also tells the source how far it got, for
monitoring tools; that is never read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from projector.batch import Batch, ConsumedRecord, decode
from projector.conflicts import log_conflicts
from projector.errors import (
    OffsetGapError,
    SourceUnavailable,
    StoreUnavailable,
    VersionChangedError,
)
from projector.metrics import ProjectorMetrics
from projector.ports import CommitResult, ProjectionStore, RecordSource
from shared.offsets import highest_offsets

logger = logging.getLogger(__name__)

LONGEST_WINDOW = timedelta(hours=1)
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
# A batch is gathered from fetches of at most FETCH_SLICE records, decoded DECODE_SLICE at a
# time, yielding to the event loop in between: the commit in flight sends each next statement
# only when the loop runs it, and a fetch parses all its records in one go (aiokafka), so a
# large fetch or decode would hold every one of a commit's small statements waiting.
FETCH_SLICE = 1000
DECODE_SLICE = 250
TRANSIENT = (StoreUnavailable, SourceUnavailable)

Clock = Callable[[], datetime]
Pause = Callable[[asyncio.Event, float], Awaitable[None]]
"""Wait `seconds` after a transient failure, or less when the stop event is set."""


def utc_now() -> datetime:
    return datetime.now(UTC)


async def pause_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@dataclass(frozen=True, slots=True)
class FoldTarget:
    """Which version to fold into. `live`: the active version, following swaps; otherwise a
    fixed (building) version."""

    live: bool
    version: int


class FoldLoop:
    def __init__(
        self,
        *,
        source: RecordSource,
        store: ProjectionStore,
        topic: str,
        target: FoldTarget,
        metrics: ProjectorMetrics,
        max_batch: int,
        poll_timeout_ms: int,
        clock: Clock = utc_now,
        pause: Pause = pause_unless_stopped,
    ) -> None:
        self._source = source
        self._store = store
        self._topic = topic
        self._target = target
        self.version = target.version
        self._metrics = metrics
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._clock = clock
        self._pause_for = pause
        self.batch_lock = asyncio.Lock()
        self.next_offsets: dict[int, int] = {}
        self.folded_total = 0
        self._until: Mapping[int, int] | None = None
        self._backoff = 0.0
        # Bumped by every seek: records fetched before a seek are not committed after it.
        self._generation = 0
        self._reporting: asyncio.Task[None] | None = None

    # -- the RebalanceHandler port ------------------------------------------------------------

    async def partitions_revoked(self, partitions: Sequence[int]) -> None:
        # Wait for an in-flight batch: it commits (or fails) before the partitions move on.
        async with self.batch_lock:
            logger.info("partitions revoked", extra={"partitions": sorted(partitions)})

    async def partitions_assigned(self, partitions: Sequence[int]) -> None:
        logger.info("partitions assigned", extra={"partitions": sorted(partitions)})
        try:
            await self.seek_to_stored(partitions)
        except TRANSIENT as err:
            # The source reads from its default position then; the store skips what is
            # already folded (or refuses a gap), and that batch re-seeks.
            logger.warning("could not seek to the stored offsets on assignment: %r", err)

    # -- folding ------------------------------------------------------------------------------

    async def seek_to_stored(self, partitions: Sequence[int]) -> None:
        if not partitions:
            return
        if self._target.live:
            self.version = await self._store.active_version()
        stored = await self._store.stored_offsets(self.version, partitions)
        self._generation += 1
        for partition in partitions:
            self._source.seek(partition, stored[partition])
            self.next_offsets[partition] = stored[partition]
        logger.info(
            "positioned at stored offsets",
            extra={"version": self.version, "offsets": {str(p): o for p, o in stored.items()}},
        )

    def caught_up(self) -> bool:
        """With `until`: every partition has reached its target offset."""
        return self._reaches(self.next_offsets)

    def _reaches(self, offsets: Mapping[int, int]) -> bool:
        until = self._until
        if until is None:
            return False
        return all(offsets.get(p, 0) >= offset for p, offset in until.items())

    def _completes(self, batch: Batch) -> bool:
        """With `until`: this batch takes every partition to its target."""
        return self._reaches(highest_offsets(batch.next_offsets().items(), dict(self.next_offsets)))

    async def run(self, stop: asyncio.Event, *, until: Mapping[int, int] | None = None) -> None:
        """Fold until `stop` is set, or, with `until`, until every partition reached it.

        Pipelined: while one batch commits (the store's time), the next one is fetched and
        decoded (ours). Commits stay strictly one after another, each under `batch_lock`, and a
        batch read before a seek (a failed commit, a rebalance) is dropped, not committed.
        """
        self._until = until
        self._backoff = 0.0
        pending: asyncio.Task[None] | None = None
        try:
            while not stop.is_set() and not self.caught_up():
                try:
                    generation, prepared = await self._gather()
                except SourceUnavailable as err:  # e.g. the broker is gone: wait, fetch again
                    await self._pause(err, stop)
                    continue
                if pending is not None:
                    await pending
                    pending = None
                if prepared is not None and generation == self._generation:
                    pending = asyncio.create_task(self._commit(*prepared, stop))
                    if self._completes(prepared[0]):  # the last one: no fetch to overlap
                        await pending
                        pending = None
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # leaving on an error: do not leave a commit running behind
                with contextlib.suppress(asyncio.CancelledError, *TRANSIENT):
                    await pending
            await self._finish_reporting()

    async def _commit(self, batch: Batch, decode_seconds: float, stop: asyncio.Event) -> None:
        async with self.batch_lock:
            try:
                started = time.perf_counter()
                result = await self._store.commit(self.version, batch, live=self._target.live)
                self._observe(batch, result, decode_seconds + time.perf_counter() - started)
                self._backoff = 0.0
            except (VersionChangedError, OffsetGapError) as err:
                logger.info("re-seeking: %s", err)
                self._metrics.retries.labels(type(err).__name__).inc()
                await self._recover(stop)
            except TRANSIENT as err:
                await self._pause(err, stop)
                await self._recover(stop)
            else:
                if result.stale:
                    # Behind the stored offsets (e.g. a seek on assignment failed): skipping is
                    # exact but slow, so jump to where the projection stands.
                    self._metrics.retries.labels("stale").inc()
                    await self._recover(stop)
                elif self._target.live:
                    self._report_offsets()

    async def _pause(self, err: BaseException, stop: asyncio.Event) -> None:
        """Back off (0.1 s doubling to 5 s) after a transient failure, unless stopping."""
        self._backoff = min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, self._backoff * 2))
        logger.warning("%s; retrying in %.1f s", type(err).__name__, self._backoff)
        self._metrics.retries.labels(type(err).__name__).inc()
        await self._pause_for(stop, self._backoff)

    async def _recover(self, stop: asyncio.Event) -> None:
        """Re-seek every assigned partition to its stored offset, retrying until it works."""
        while not stop.is_set():
            try:
                await self.seek_to_stored(self._source.assignment())
            except TRANSIENT as err:
                await self._pause(err, stop)
            else:
                return

    def _report_offsets(self) -> None:
        """Hand the folded offsets to the source for monitoring, one report at a time; a
        report still running is not waited for (the next batch reports newer offsets)."""
        if self._reporting is None or self._reporting.done():
            assigned = self._source.assignment()
            offsets = {p: o for p, o in self.next_offsets.items() if p in assigned}
            self._reporting = asyncio.create_task(self._source.commit_offsets(offsets))

    async def _finish_reporting(self) -> None:
        if self._reporting is not None:
            await self._reporting

    def _clip(self, records: list[ConsumedRecord]) -> list[ConsumedRecord]:
        until = self._until
        if until is None:
            return records
        return [r for r in records if r.offset < until.get(r.partition, 0)]

    async def _gather(self) -> tuple[int, tuple[Batch, float] | None]:
        """Fetch up to `max_batch` records, `FETCH_SLICE` at a time, and decode them
        `DECODE_SLICE` at a time, yielding to the event loop in between so that the commit in
        flight goes on; the first fetch waits up to the poll timeout, the next ones take only
        what has arrived. Returns the seek
        generation the records belong to and the batch, None when nothing is left to fold.
        A seek while gathering (a failed commit, a rebalance) stops it: that batch is dropped.
        A fetch that fails after the first one ends the batch with what it has."""
        fetched = await self._source.fetch(
            timeout_ms=self._poll_timeout_ms, max_records=min(FETCH_SLICE, self._max_batch)
        )
        generation = self._generation
        records: list[ConsumedRecord] = []
        log_end: dict[int, int] = {}
        reached = dict(self.next_offsets)
        seconds = 0.0
        while fetched.records:
            for partition, messages in fetched.records.items():
                for at in range(0, len(messages), DECODE_SLICE):
                    started = time.perf_counter()
                    records += [
                        decode(partition, m.offset, m.value)
                        for m in messages[at : at + DECODE_SLICE]
                    ]
                    seconds += time.perf_counter() - started
                    await asyncio.sleep(0)
                log_end[partition] = fetched.log_end.get(partition, 0)
                reached[partition] = messages[-1].offset + 1
            room = self._max_batch - len(records)
            if room <= 0 or self._generation != generation or self._reaches(reached):
                break
            try:
                fetched = await self._source.fetch(timeout_ms=0, max_records=min(FETCH_SLICE, room))
            except SourceUnavailable:
                break
        started = time.perf_counter()
        records = self._clip(records)
        if not records:
            return generation, None
        batch = Batch(records=records, log_end_offsets=log_end)
        batch.whole()  # what the commit will fold, worked out while the previous one commits
        return generation, (batch, seconds + time.perf_counter() - started)

    def _observe(self, batch: Batch, result: CommitResult, seconds: float) -> None:
        reached = batch.next_offsets()
        highest_offsets(reached.items(), self.next_offsets)
        for partition in reached:
            end = batch.log_end_offsets.get(partition, 0)
            lag = max(0, end - self.next_offsets[partition])
            self._metrics.lag.labels(str(partition)).set(lag)
        horizon = self._clock() - LONGEST_WINDOW
        late = sum(1 for event in result.folded if event.occurred_at < horizon)
        self.folded_total += len(result.folded)
        self._metrics.events_folded.inc(len(result.folded))
        self._metrics.duplicates.inc(result.duplicates)
        self._metrics.conflicts.inc(len(result.conflicts))
        log_conflicts(result.conflicts, version=self.version)
        self._metrics.poison.inc(len(result.poison))
        self._metrics.late.inc(late)
        self._metrics.batch_size.observe(len(batch.records))
        self._metrics.fold_seconds.observe(seconds)
        for partition, offset, poison in result.poison:  # fresh ones: each is logged once
            logger.warning(
                "skipped a poison event",
                extra={
                    "topic": self._topic,
                    "partition": partition,
                    "offset": offset,
                    "reason": poison.reason,
                },
            )
