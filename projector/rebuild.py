"""`python -m projector rebuild`: a new projection version from offset 0, verified, swapped.

1. Take the rebuild lock (one rebuild at a time); resume the version an interrupted rebuild
   left, or create a new one.
2. Fold the whole log into it with the live projector's fold and exactly-once store, chasing
   the live version's stored offsets while it keeps folding and serving reads.
3. In one transaction holding the active version FOR UPDATE (live batches wait; reads do
   not): fold the last few events up to the live offsets, compare count/sum/max/min at that
   common set of offsets, and swap the active version, or roll back and explain.
4. Drop the old version (unless `--keep-old`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from projector.adapters.postgres_store import PostgresProjectionStore
from projector.consumer import FoldTarget, Projector
from projector.fold import Totals
from projector.metrics import ProjectorMetrics
from projector.progress import Progress
from projector.versions import VersionCatalog
from shared.settings import KafkaSettings, ProjectorSettings
from shared.topic import topic_partitions

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_MISMATCH, EXIT_LOCKED, EXIT_FAILED, EXIT_BEHIND, EXIT_INTERRUPTED = 0, 1, 3, 4, 5, 130
CATCH_UP_ROUNDS = 20
CLOSE_ENOUGH = 5_000  # events behind the live version before the final, locking round


class InterruptedRebuild(Exception):
    """Ctrl-C / SIGTERM: the live projection is untouched; the new version is resumable."""


@dataclass(frozen=True, slots=True)
class RebuildOptions:
    dry_run: bool = False
    keep_old: bool = False
    until: str | None = None


def parse_until(spec: str) -> datetime | dict[int, int]:
    """`2026-11-26T12:00:00Z` (record time) or `P=O[,P=O...]` (next offset per partition)."""
    if "=" in spec:
        try:
            pairs = (part.split("=", 1) for part in spec.split(","))
            return {int(p): int(o) for p, o in pairs}
        except ValueError as err:
            msg = f"--until {spec!r}: expected P=O[,P=O...]"
            raise ValueError(msg) from err
    moment = datetime.fromisoformat(spec)
    if moment.tzinfo is None:
        msg = f"--until {spec!r}: the timestamp needs a timezone"
        raise ValueError(msg)
    return moment


def summary(totals: Totals) -> dict[str, str | int | None]:
    return {
        "count": totals.count,
        "sum": str(totals.sum),
        "max": None if totals.max is None else str(totals.max),
        "min": None if totals.min is None else str(totals.min),
    }


class Rebuild:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        kafka: KafkaSettings,
        settings: ProjectorSettings,
        metrics: ProjectorMetrics,
        stop: asyncio.Event,
    ) -> None:
        self._catalog = VersionCatalog(pool)
        self._store = PostgresProjectionStore(pool)
        self._kafka = kafka
        self._settings = settings
        self._metrics = metrics
        self._stop = stop

    async def run(self, options: RebuildOptions) -> int:
        async with self._catalog.rebuild_lock():
            version = await self._catalog.building(options.until)
            if version is None:
                version = await self._catalog.create(options.until)
                logger.info("created projection version %d", version)
            else:
                logger.info("resuming projection version %d", version)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._kafka.bootstrap_servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            await consumer.start()
            try:
                return await self._run(consumer, version, options)
            finally:
                await consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer, version: int, options: RebuildOptions) -> int:
        partitions = await topic_partitions(self._kafka)
        assignment = [TopicPartition(self._kafka.topic, p) for p in partitions]
        consumer.assign(assignment)
        projector = Projector(
            consumer=consumer,
            store=self._store,
            topic=self._kafka.topic,
            target=FoldTarget(live=False, version=version),
            metrics=self._metrics,
            max_batch=self._settings.max_batch,
            poll_timeout_ms=self._settings.poll_timeout_ms,
        )
        ends = {tp.partition: o for tp, o in (await consumer.end_offsets(assignment)).items()}
        if options.until is not None:
            until = await self._resolve_until(consumer, assignment, ends, options.until)
            await self._fold_to(projector, assignment, until)
            totals = await self._store.totals(version)
            self._report({"version": version, "until": until, "totals": summary(totals)})
            return EXIT_OK

        for _ in range(CATCH_UP_ROUNDS):
            live = await self._catalog.offsets(await self._catalog.active())
            target = {p: live.get(p, 0) for p in partitions}
            await self._fold_to(projector, assignment, target)
            latest = await self._catalog.offsets(await self._catalog.active())
            if sum(latest.values()) - sum(target.values()) <= CLOSE_ENOUGH:
                break
        else:  # never close enough: the final, locking round would hold live folding too long
            logger.error(
                "the live projection advances faster than the rebuild catches up; run `rebuild`"
                " again (it resumes) when the load is lower"
            )
            return EXIT_BEHIND
        return await self._verify_and_swap(projector, assignment, partitions, version, options)

    async def _verify_and_swap(
        self,
        projector: Projector,
        assignment: list[TopicPartition],
        partitions: list[int],
        version: int,
        options: RebuildOptions,
    ) -> int:
        old: int
        async with self._catalog.holding_active() as hold:
            held_at = time.perf_counter()
            old = hold.active
            live = await hold.offsets(old)
            common = {p: live.get(p, 0) for p in partitions}
            await self._fold_to(projector, assignment, common)
            old_totals, new_totals = await hold.totals(old), await hold.totals(version)
            report = {
                "active_version": old,
                "new_version": version,
                "offsets": common,
                "active": summary(old_totals),
                "rebuilt": summary(new_totals),
            }
            if old_totals != new_totals:
                report["result"] = "MISMATCH: not swapped"
                self._report(report)
                return EXIT_MISMATCH
            if options.dry_run:
                report["result"] = "verified (dry run: not swapped)"
                self._report(report)
                return EXIT_OK
            await hold.swap(version)
            report["result"] = "verified and swapped"
            report["swap_held_ms"] = round((time.perf_counter() - held_at) * 1000, 1)
        self._report(report)
        if not options.keep_old:
            try:
                await self._catalog.drop(old)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
                logger.warning(  # the swap is done; only the clean-up is left
                    "could not drop the old version %d (%s); `rebuild --abort` removes it",
                    old,
                    type(err).__name__,
                )
        return EXIT_OK

    async def _fold_to(
        self, projector: Projector, assignment: list[TopicPartition], target: dict[int, int]
    ) -> None:
        await projector.seek_to_stored(assignment)
        progress = Progress(
            lambda: sum(projector.next_offsets.values()), lambda: sum(target.values())
        )
        reporter = asyncio.create_task(progress.report())
        try:
            await projector.run(self._stop, until=target)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        if self._stop.is_set():
            raise InterruptedRebuild

    async def _resolve_until(
        self,
        consumer: AIOKafkaConsumer,
        assignment: list[TopicPartition],
        ends: dict[int, int],
        spec: str,
    ) -> dict[int, int]:
        parsed = parse_until(spec)
        if isinstance(parsed, dict):
            return {p: min(parsed.get(p, end), end) for p, end in ends.items()}
        stamp = int(parsed.timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(assignment, stamp))
        return {
            tp.partition: ends[tp.partition] if hit is None else hit.offset
            for tp, hit in found.items()
        }

    def _report(self, report: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")


async def abort(pool: asyncpg.Pool) -> list[int]:
    """Remove every version a rebuild left behind: unfinished ones, and replaced ones whose
    drop did not happen (`--keep-old` or an error)."""
    catalog = VersionCatalog(pool)
    async with catalog.rebuild_lock():
        leftovers = {"building", "retired"}
        removed = [v.version for v in await catalog.describe() if v.state in leftovers]
        for version in removed:
            await catalog.drop(version)
    return removed
