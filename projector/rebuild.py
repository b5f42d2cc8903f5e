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
from typing import TextIO

from projector.errors import StoreUnavailable
from projector.loop import FoldLoop
from projector.metrics import ProjectorMetrics
from projector.ports import ProjectionStore, RecordSource, VersionCatalog
from projector.positions import FoldTarget
from projector.progress_report import ProgressReport
from shared.totals import Totals

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_LOCKED, EXIT_FAILED = 0, 1, 2, 3, 4
EXIT_BEHIND, EXIT_INTERRUPTED = 5, 130


@dataclass(frozen=True, slots=True)
class CatchUp:
    """How the rebuild chases a live projection that keeps folding."""

    rounds: int = 20
    close_enough: int = 5_000  # events behind the live version before the final, locking round


LEGACY_NEXT = (
    "the active version holds legacy ids (stored before migration 005), which drop other"
    " producers' transactions with the same id: no rebuild of it verifies equal. Review the"
    " difference, then run `rebuild --accept-difference` (it resumes this version) to swap it in"
)


class InterruptedRebuild(Exception):
    """Ctrl-C / SIGTERM: the live projection is untouched; the new version is resumable."""


@dataclass(frozen=True, slots=True)
class RebuildOptions:
    dry_run: bool = False
    keep_old: bool = False
    until: str | None = None
    # Swap even when the totals differ: only for an active version holding legacy ids, which
    # drop other producers' transactions with those ids, so no rebuild of it verifies equal.
    accept_difference: bool = False


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


def difference(active: Totals, rebuilt: Totals) -> dict[str, str | int]:
    """What the rebuilt version counts beyond the active one (negative: fewer)."""
    return {"count": rebuilt.count - active.count, "sum": str(rebuilt.sum - active.sum)}


class Rebuild:
    def __init__(
        self,
        *,
        catalog: VersionCatalog,
        store: ProjectionStore,
        source: RecordSource,
        topic: str,
        metrics: ProjectorMetrics,
        max_batch: int,
        poll_timeout_ms: int,
        stop: asyncio.Event,
        catch_up: CatchUp = CatchUp(),
        out: TextIO = sys.stdout,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._source = source
        self._topic = topic
        self._metrics = metrics
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._stop = stop
        self._catch_up = catch_up
        self._out = out

    async def run(self, options: RebuildOptions) -> int:
        async with self._catalog.rebuild_lock():
            if options.accept_difference and not await self._legacy_ids(
                await self._catalog.active()
            ):
                logger.error(
                    "--accept-difference is only for an active version holding legacy ids"
                    " (`status` shows legacy_ids); this one must verify equal"
                )
                return EXIT_USAGE
            version = await self._catalog.building(options.until)
            if version is None:
                version = await self._catalog.create(options.until)
                logger.info("created projection version %d", version)
            else:
                logger.info("resuming projection version %d", version)
            return await self._run(version, options)

    async def _run(self, version: int, options: RebuildOptions) -> int:
        partitions = await self._source.partitions()
        self._source.assign(partitions)
        loop = FoldLoop(
            source=self._source,
            store=self._store,
            topic=self._topic,
            target=FoldTarget(live=False, version=version),
            metrics=self._metrics,
            max_batch=self._max_batch,
            poll_timeout_ms=self._poll_timeout_ms,
        )
        if options.until is not None:
            until = await self._resolve_until(partitions, options.until)
            await self._fold_to(loop, partitions, until)
            totals = await self._store.totals(version)
            self._report({"version": version, "until": until, "totals": summary(totals)})
            return EXIT_OK

        for _ in range(self._catch_up.rounds):
            live = await self._catalog.offsets(await self._catalog.active())
            target = {p: live.get(p, 0) for p in partitions}
            await self._fold_to(loop, partitions, target)
            latest = await self._catalog.offsets(await self._catalog.active())
            if sum(latest.values()) - sum(target.values()) <= self._catch_up.close_enough:
                break
        else:  # never close enough: the final, locking round would hold live folding too long
            logger.error(
                "the live projection advances faster than the rebuild catches up; run `rebuild`"
                " again (it resumes) when the load is lower"
            )
            return EXIT_BEHIND
        return await self._verify_and_swap(loop, partitions, version, options)

    async def _verify_and_swap(
        self, loop: FoldLoop, partitions: list[int], version: int, options: RebuildOptions
    ) -> int:
        old: int
        async with self._catalog.holding_active() as hold:
            held_at = time.perf_counter()
            old = hold.active
            live = await hold.offsets(old)
            common = {p: live.get(p, 0) for p in partitions}
            await self._fold_to(loop, partitions, common)
            old_totals, new_totals = await hold.totals(old), await hold.totals(version)
            report = {
                "active_version": old,
                "new_version": version,
                "offsets": common,
                "active": summary(old_totals),
                "rebuilt": summary(new_totals),
            }
            if old_totals != new_totals:
                report["difference"] = difference(old_totals, new_totals)
                if not options.accept_difference:
                    report["result"] = "MISMATCH: not swapped"
                    if await self._legacy_ids(old):
                        report["next"] = LEGACY_NEXT
                    self._report(report)
                    return EXIT_MISMATCH
                logger.warning(
                    "swapping in version %d although its totals differ from version %d's, as"
                    " --accept-difference asks: %s",
                    version,
                    old,
                    report["difference"],
                )
            if not options.dry_run:
                await hold.swap(version)
        if options.dry_run:
            await self._catalog.mark_verified(version)
            report["result"] = "verified (dry run: not swapped)"
            report["next"] = "run `make rebuild` to swap it in (it resumes and verifies again)"
            self._report(report)
            return EXIT_OK
        report["result"] = (
            "difference accepted and swapped" if "difference" in report else "verified and swapped"
        )
        report["swap_held_ms"] = round((time.perf_counter() - held_at) * 1000, 1)
        self._report(report)
        if not options.keep_old:
            try:
                await self._catalog.drop(old)
            except StoreUnavailable as err:
                logger.warning(  # the swap is done; only the clean-up is left
                    "could not drop the old version %d (%s); `rebuild --abort` removes it",
                    old,
                    err,
                )
        return EXIT_OK

    async def _legacy_ids(self, version: int) -> bool:
        return any(v.legacy_ids for v in await self._catalog.describe() if v.version == version)

    async def _fold_to(self, loop: FoldLoop, partitions: list[int], target: dict[int, int]) -> None:
        await loop.positions.seek_to_stored(partitions)
        progress = ProgressReport(
            lambda: sum(loop.positions.next_offsets.values()), lambda: sum(target.values())
        )
        reporter = asyncio.create_task(progress.report())
        try:
            await loop.run(self._stop, until=target)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        if self._stop.is_set():
            raise InterruptedRebuild

    async def _resolve_until(self, partitions: list[int], spec: str) -> dict[int, int]:
        parsed = parse_until(spec)
        if isinstance(parsed, datetime):
            return await self._source.offsets_at(parsed, partitions)
        ends = await self._source.end_offsets(partitions)
        return {p: min(parsed.get(p, end), end) for p, end in ends.items()}

    def _report(self, report: dict[str, object]) -> None:
        self._out.write(json.dumps(report, indent=2, default=str) + "\n")


async def abort(catalog: VersionCatalog) -> list[int]:
    """Remove every version a rebuild left behind: unfinished ones, and replaced ones whose
    drop did not happen (`--keep-old` or an error)."""
    async with catalog.rebuild_lock():
        leftovers = {"building", "verified", "retired"}
        removed = [v.version for v in await catalog.describe() if v.state in leftovers]
        for version in removed:
            await catalog.drop(version)
    return removed
