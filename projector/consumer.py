"""The consumer loop: Kafka batches in, one `ProjectionStore.commit` per batch.

Kafka's committed offsets are never used: on start, on every assignment and after every
failed batch the consumer seeks to the offsets stored in PostgreSQL, so whatever crashes, the
next batch starts exactly where the last committed one ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from projector.batch import Batch, ConsumedRecord, Poison, decode
from projector.conflicts import log_conflicts
from projector.errors import OffsetGapError, VersionChangedError
from projector.metrics import ProjectorMetrics
from projector.ports import CommitResult, ProjectionStore

logger = logging.getLogger(__name__)

LONGEST_WINDOW = timedelta(hours=1)
MAX_BACKOFF_SECONDS = 5.0
DECODE_SLICE = 250
TRANSIENT = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, KafkaError, TimeoutError)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FoldTarget:
    """Which version to fold into. `live`: the active version, following swaps; otherwise a
    fixed (building) version."""

    live: bool
    version: int


class Projector:
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        store: ProjectionStore,
        topic: str,
        target: FoldTarget,
        metrics: ProjectorMetrics,
        max_batch: int,
        poll_timeout_ms: int,
        clock: Clock = utc_now,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._topic = topic
        self._target = target
        self.version = target.version
        self._metrics = metrics
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._clock = clock
        self.batch_lock = asyncio.Lock()
        self.next_offsets: dict[int, int] = {}
        self.folded_total = 0
        self._until: Mapping[int, int] | None = None
        self._backoff = 0.0
        # Bumped by every seek: records fetched before a seek are not committed after it.
        self._generation = 0

    @property
    def listener(self) -> ConsumerRebalanceListener:
        return _SeekOnAssign(self)

    async def seek_to_stored(self, partitions: Collection[TopicPartition]) -> None:
        if not partitions:
            return
        if self._target.live:
            self.version = await self._store.active_version()
        stored = await self._store.stored_offsets(self.version, [tp.partition for tp in partitions])
        self._generation += 1
        for tp in partitions:
            self._consumer.seek(tp, stored[tp.partition])
            self.next_offsets[tp.partition] = stored[tp.partition]
        logger.info(
            "positioned at stored offsets",
            extra={"version": self.version, "offsets": {str(p): o for p, o in stored.items()}},
        )

    def _completes(self, batch: Batch) -> bool:
        """With `until`: this batch takes every partition to its target."""
        until = self._until
        if until is None:
            return False
        reached = dict(self.next_offsets)
        for partition, offset in batch.next_offsets().items():
            reached[partition] = max(reached.get(partition, 0), offset)
        return all(reached.get(p, 0) >= offset for p, offset in until.items())

    def caught_up(self) -> bool:
        """With `until`: every partition has reached its target offset."""
        until = self._until
        if until is None:
            return False
        return all(self.next_offsets.get(p, 0) >= offset for p, offset in until.items())

    async def run(self, stop: asyncio.Event, *, until: Mapping[int, int] | None = None) -> None:
        """Fold until `stop` is set, or, with `until`, until every partition reached it.

        Pipelined: while one batch commits (PostgreSQL's time), the next one is fetched and
        decoded (ours). Commits stay strictly one after another, each under `batch_lock`, and a
        batch read before a seek (a failed commit, a rebalance) is dropped, not committed.
        """
        self._until = until
        self._backoff = 0.0
        pending: asyncio.Task[None] | None = None
        try:
            while not stop.is_set() and not self.caught_up():
                try:
                    fetched = await self._consumer.getmany(
                        timeout_ms=self._poll_timeout_ms, max_records=self._max_batch
                    )
                except KafkaError as err:  # e.g. the broker is gone: wait, then fetch again
                    await self._pause(err, stop)
                    continue
                generation = self._generation
                prepared = await self._prepare(fetched) if fetched else None
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
                await self._recover(0.0, stop)
            except TRANSIENT as err:
                await self._pause(err, stop)
                await self._recover(0.0, stop)
            else:
                if result.stale:
                    # Behind the stored offsets (e.g. a seek on assignment failed and aiokafka
                    # swallowed it): skipping is exact but slow, so jump to where we stand.
                    self._metrics.retries.labels("stale").inc()
                    await self._recover(0.0, stop)

    async def _pause(self, err: BaseException, stop: asyncio.Event) -> None:
        """Back off (0.1 s doubling to 5 s) after a transient failure, unless stopping."""
        self._backoff = min(MAX_BACKOFF_SECONDS, max(0.1, self._backoff * 2))
        logger.warning("%s; retrying in %.1f s", type(err).__name__, self._backoff)
        self._metrics.retries.labels(type(err).__name__).inc()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self._backoff)

    async def _recover(self, backoff: float, stop: asyncio.Event) -> None:
        """Re-seek every assigned partition to its stored offset, retrying until it works."""
        while not stop.is_set():
            if backoff:
                await asyncio.sleep(backoff)
            try:
                await self._reseek_assigned()
            except TRANSIENT as err:
                backoff = min(MAX_BACKOFF_SECONDS, max(0.1, backoff * 2))
                logger.warning(
                    "still failing (%s), retrying in %.1f s", type(err).__name__, backoff
                )
            else:
                return

    async def _reseek_assigned(self) -> None:
        await self.seek_to_stored(self._consumer.assignment())

    def _clip(self, records: list[ConsumedRecord]) -> list[ConsumedRecord]:
        until = self._until
        if until is None:
            return records
        return [r for r in records if r.offset < until.get(r.partition, 0)]

    async def _prepare(
        self, fetched: Mapping[TopicPartition, list[object]]
    ) -> tuple[Batch, float] | None:
        """Decode what was fetched; None when nothing is left to fold. It yields to the event
        loop every `DECODE_SLICE` records so that the commit in flight can send its next
        statement as soon as PostgreSQL answered the previous one (the overlap is the point)."""
        started = time.perf_counter()
        records: list[ConsumedRecord] = []
        for tp, messages in fetched.items():
            for start in range(0, len(messages), DECODE_SLICE):
                for message in messages[start : start + DECODE_SLICE]:
                    records.append(decode(tp.partition, message.offset, message.value))  # type: ignore[attr-defined]
                await asyncio.sleep(0)
        records = self._clip(records)
        if not records:
            return None
        batch = Batch(
            records=records,
            log_end_offsets={tp.partition: self._consumer.highwater(tp) or 0 for tp in fetched},
        )
        return batch, time.perf_counter() - started

    def _observe(self, batch: Batch, result: CommitResult, seconds: float) -> None:
        for partition, offset in batch.next_offsets().items():
            self.next_offsets[partition] = max(self.next_offsets.get(partition, 0), offset)
            end = batch.log_end_offsets.get(partition, 0)
            self._metrics.lag.labels(str(partition)).set(max(0, end - self.next_offsets[partition]))
        horizon = self._clock() - LONGEST_WINDOW
        late = sum(1 for event in result.folded if event.occurred_at < horizon)
        self.folded_total += len(result.folded)
        self._metrics.events_folded.inc(len(result.folded))
        self._metrics.duplicates.inc(result.duplicates)
        self._metrics.conflicts.inc(len(result.conflicts))
        log_conflicts(result.conflicts, version=self.version)
        self._metrics.poison.inc(result.poison)
        self._metrics.late.inc(late)
        self._metrics.batch_size.observe(len(batch.records))
        self._metrics.fold_seconds.observe(seconds)
        for record in batch.records if result.poison else ():  # none fresh: all logged before
            if isinstance(record.item, Poison):
                logger.warning(
                    "skipped a poison event",
                    extra={
                        "topic": self._topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "reason": record.item.reason,
                    },
                )


class _SeekOnAssign(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        # Wait for an in-flight batch: it commits (or fails) before the partitions move on.
        async with self._projector.batch_lock:
            logger.info(
                "partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)}
            )

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        logger.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )
        try:
            await self._projector.seek_to_stored(assigned)
        except TRANSIENT as err:
            # aiokafka would swallow it: fetching then starts from the earliest offset, the
            # store skips what is already folded, and the first such batch re-seeks.
            logger.warning("could not seek to the stored offsets on assignment: %r", err)
