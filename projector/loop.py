"""The fold loop: batches gathered from a `RecordSource`, each committed into a
`ProjectionStore` (projector/commit.py), pipelined.

It knows no driver. Positions come from the store only: on start, on every assignment and
after every failed batch the loop seeks the source to the offsets stored with the projection
(projector/positions.py), so whatever crashes, the next batch starts exactly where the last
committed one ended. After each commit of the live projection it also reports how far it got,
for monitoring tools (projector/offset_report.py); that is never read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from projector.commit import commit
from projector.errors import OffsetGapError, SourceUnavailable, StaleBatchError, VersionChangedError
from projector.gather import Gathered, Gatherer
from projector.metrics import ProjectorMetrics
from projector.observe import Clock, CommitObserver, utc_now
from projector.offset_report import OffsetReporter
from projector.ports import ProjectionStore, RecordSource
from projector.positions import FoldTarget, Positions, reaches
from projector.rebalance import Rebalancing
from projector.retry import TRANSIENT, Backoff, Pause, pause_unless_stopped
from shared.offsets import highest_offsets

logger = logging.getLogger(__name__)


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
        self._store = store
        self.positions = Positions(source=source, store=store, target=target)
        self._commit_lock = asyncio.Lock()
        self.rebalancing = Rebalancing(self.positions, self._commit_lock)
        self._gatherer = Gatherer(
            source=source,
            positions=self.positions,
            max_batch=max_batch,
            poll_timeout_ms=poll_timeout_ms,
        )
        self._backoff = Backoff(metrics, pause)
        self._observer = CommitObserver(metrics=metrics, topic=topic, clock=clock)
        self._reporter = OffsetReporter(source)
        self._source = source
        self._until: Mapping[int, int] | None = None

    @property
    def folded_total(self) -> int:
        return self._observer.folded_total

    def caught_up(self) -> bool:
        """With `until`: every partition has reached its target offset."""
        return reaches(self.positions.next_offsets, self._until)

    async def run(self, stop: asyncio.Event, *, until: Mapping[int, int] | None = None) -> None:
        """Fold until `stop` is set, or, with `until`, until every partition reached it.

        Pipelined: while one batch commits (the store's time), the next one is gathered (ours).
        Commits stay strictly one after another, each under the commit lock, and a batch read
        before a seek (a failed commit, a rebalance) is dropped, not committed.
        """
        self._until = until
        self._backoff.reset()
        pending: asyncio.Task[None] | None = None
        try:
            while not stop.is_set() and not self.caught_up():
                try:
                    gathered = await self._gatherer.gather(until)
                except SourceUnavailable as err:  # e.g. the broker is gone: wait, fetch again
                    await self._backoff.wait(err, stop)
                    continue
                if pending is not None:
                    await pending
                    pending = None
                if gathered is not None and gathered.generation == self.positions.generation:
                    pending = asyncio.create_task(self._commit(gathered, stop))
                    reached = gathered.batch.next_offsets().items()
                    if reaches(
                        highest_offsets(reached, dict(self.positions.next_offsets)), until
                    ):  # the last one: no fetch to overlap
                        await pending
                        pending = None
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # leaving on an error: do not leave a commit running behind
                with contextlib.suppress(asyncio.CancelledError, *TRANSIENT):
                    await pending
            await self._reporter.finish()

    async def _commit(self, gathered: Gathered, stop: asyncio.Event) -> None:
        batch, positions = gathered.batch, self.positions
        async with self._commit_lock:
            try:
                started = time.perf_counter()
                result = await commit(
                    self._store, batch, version=positions.version, live=positions.live
                )
            except (VersionChangedError, OffsetGapError, StaleBatchError) as err:
                logger.info("re-seeking: %s", err)
                self._backoff.count(
                    "stale" if isinstance(err, StaleBatchError) else type(err).__name__
                )
                await self._recover(stop)
                return
            except TRANSIENT as err:
                await self._backoff.wait(err, stop)
                await self._recover(stop)
                return
            self._backoff.reset()
            reached = batch.next_offsets()
            positions.advance(reached)
            self._observer.committed(
                result,
                version=positions.version,
                records=len(batch.records),
                seconds=gathered.seconds + time.perf_counter() - started,
                lag={
                    p: max(0, batch.log_end_offsets.get(p, 0) - positions.next_offsets[p])
                    for p in reached
                },
            )
            if positions.live:
                self._reporter.report(positions.assigned_offsets())

    async def _recover(self, stop: asyncio.Event) -> None:
        """Re-seek every assigned partition to its stored offset, retrying until it works."""
        while not stop.is_set():
            try:
                await self.positions.seek_to_stored(self._source.assignment())
            except TRANSIENT as err:
                await self._backoff.wait(err, stop)
            else:
                return
