"""The rebuild over the in-memory source, store and catalog: build, verify, swap, and every
way it can end (exit codes of `python -m projector rebuild`)."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from projector.batch import Batch
from projector.commit import commit
from projector.errors import RebuildLockedError, StoreUnavailable
from projector.metrics import ProjectorMetrics
from projector.rebuild import (
    EXIT_BEHIND,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_USAGE,
    CatchUp,
    InterruptedRebuild,
    Rebuild,
    RebuildOptions,
    abort,
)
from projector.records import decode
from shared.totals import Totals
from tests.doubles.memory_source import InMemoryRecordSource
from tests.doubles.memory_store import InMemoryProjectionStore, InMemoryVersionCatalog
from tests.unit.projector_kit import AT, event_bytes


@dataclass
class Site:
    source: InMemoryRecordSource = field(default_factory=lambda: InMemoryRecordSource(3))
    store: InMemoryProjectionStore = field(default_factory=InMemoryProjectionStore)
    out: io.StringIO = field(default_factory=io.StringIO)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    catalog: InMemoryVersionCatalog | None = None

    def __post_init__(self) -> None:
        if self.catalog is None:
            self.catalog = InMemoryVersionCatalog(self.store)

    def write(self, count: int, amount: str = "1.00") -> None:
        for i in range(count):
            self.source.append(i % 3, event_bytes(amount), timestamp=AT)

    async def fold_live(self) -> None:
        """What the live projector did: the whole log folded into the active version."""
        stored = self.store.versions[self.store.active].offsets
        records = [
            decode(p, r.offset, r.value)
            for p, log in self.source.log.items()
            for r in log
            if r.offset >= stored.get(p, 0)
        ]
        if records:
            await commit(self.store, Batch(records=records), version=self.store.active, live=True)

    def rebuild(self, catch_up: CatchUp | None = None) -> Rebuild:
        assert self.catalog is not None
        return Rebuild(
            catalog=self.catalog,
            store=self.store,
            source=self.source,
            topic="unit",
            metrics=ProjectorMetrics(CollectorRegistry()),
            max_batch=4,
            poll_timeout_ms=5,
            stop=self.stop,
            catch_up=catch_up or CatchUp(),
            out=self.out,
        )

    def report(self) -> dict[str, object]:
        reports = self.out.getvalue().split("\n}\n")
        report: dict[str, object] = json.loads(reports[-2] + "\n}")
        return report

    def states(self) -> dict[int, str]:
        return {v: s.state for v, s in self.store.versions.items()}


async def test_a_rebuild_folds_the_log_verifies_swaps_and_drops_the_old_version() -> None:
    site = Site()
    site.write(10)
    await site.fold_live()
    assert await site.rebuild().run(RebuildOptions()) == EXIT_OK
    assert site.report()["result"] == "verified and swapped"
    assert site.states() == {2: "active"}
    assert await site.store.totals(2) == Totals(10, Decimal("10.00"), Decimal(1), Decimal(1))


async def test_keep_old_keeps_the_replaced_version_and_abort_removes_it() -> None:
    site = Site()
    site.write(4)
    await site.fold_live()
    assert await site.rebuild().run(RebuildOptions(keep_old=True)) == EXIT_OK
    assert site.states() == {1: "retired", 2: "active"}
    assert site.catalog is not None
    assert await abort(site.catalog) == [1]
    assert site.states() == {2: "active"}


async def test_a_dry_run_verifies_and_swaps_nothing() -> None:
    site = Site()
    site.write(5)
    await site.fold_live()
    assert await site.rebuild().run(RebuildOptions(dry_run=True)) == EXIT_OK
    assert site.report()["result"] == "verified (dry run: not swapped)"
    assert site.states() == {1: "active", 2: "verified"}
    assert (await site.store.totals(2)).count == 5
    site.write(2)  # the log moved on: the next rebuild resumes the verified version
    await site.fold_live()
    assert await site.rebuild().run(RebuildOptions()) == EXIT_OK
    assert site.states() == {2: "active"}
    assert (await site.store.totals(2)).count == 7


async def test_a_mismatch_swaps_nothing_and_exits_1() -> None:
    site = Site()
    site.write(5)
    await site.fold_live()
    tampered = site.store.versions[1].partitions
    tampered[0] = tampered[0].merge(Totals.of(Decimal("0.01")))
    assert await site.rebuild().run(RebuildOptions()) == EXIT_MISMATCH
    assert site.report()["result"] == "MISMATCH: not swapped"
    assert site.store.active == 1


def drop_one_as_a_legacy_claim_did(site: Site) -> None:
    """The live version counted one transaction fewer than its log holds, as a legacy id
    (migration 005) makes it drop another producer's transaction with that id."""
    live = site.store.versions[1]
    live.legacy_ids = True
    live.partitions[0] = Totals(
        live.partitions[0].count - 1,
        live.partitions[0].sum - Decimal("1.00"),
        Decimal("1.00"),
        Decimal("1.00"),
    )


async def test_a_legacy_version_that_differs_is_swapped_only_when_the_operator_accepts() -> None:
    site = Site()
    site.write(5)
    await site.fold_live()
    drop_one_as_a_legacy_claim_did(site)

    assert await site.rebuild().run(RebuildOptions()) == EXIT_MISMATCH
    report = site.report()
    assert report["difference"] == {"count": 1, "sum": "1.00"}
    assert "--accept-difference" in str(report["next"])
    assert site.store.active == 1

    assert await site.rebuild().run(RebuildOptions(accept_difference=True)) == EXIT_OK
    report = site.report()
    assert (report["result"], report["difference"]) == (
        "difference accepted and swapped",
        {"count": 1, "sum": "1.00"},
    )
    assert site.states() == {2: "active"}
    assert (await site.store.totals(2)).count == 5


async def test_accept_difference_is_refused_without_legacy_ids() -> None:
    site = Site()
    site.write(5)
    await site.fold_live()
    tampered = site.store.versions[1].partitions
    tampered[0] = tampered[0].merge(Totals.of(Decimal("0.01")))
    assert await site.rebuild().run(RebuildOptions(accept_difference=True)) == EXIT_USAGE
    assert site.states() == {1: "active"}  # nothing built, nothing swapped


async def test_until_offsets_reports_the_totals_there_and_never_swaps() -> None:
    site = Site()
    for i in range(6):
        site.source.append(0, event_bytes(f"{i + 1}.00"))
    site.source.append(1, event_bytes("100.00"))
    await site.fold_live()
    assert await site.rebuild().run(RebuildOptions(until="0=3")) == EXIT_OK
    report = site.report()
    assert report["until"] == {"0": 3, "1": 1, "2": 0}
    assert report["totals"] == {"count": 4, "sum": "106.00", "max": "100.00", "min": "1.00"}
    assert site.store.active == 1


class RacingCatalog(InMemoryVersionCatalog):
    """The live projector folds more every time the rebuild looks at it."""

    def __init__(self, site: Site) -> None:
        super().__init__(site.store)
        self.site = site

    async def offsets(self, version: int) -> dict[int, int]:
        self.site.write(9)
        await self.site.fold_live()
        return await super().offsets(version)


async def test_a_rebuild_that_cannot_catch_up_exits_5_and_resumes_later() -> None:
    site = Site()
    site.catalog = RacingCatalog(site)
    site.write(3)
    await site.fold_live()
    code = await site.rebuild(CatchUp(rounds=3, close_enough=5)).run(RebuildOptions())
    assert code == EXIT_BEHIND
    assert site.states() == {1: "active", 2: "building"}

    site.catalog = InMemoryVersionCatalog(site.store)  # the load went away
    assert await site.rebuild().run(RebuildOptions()) == EXIT_OK
    assert site.store.active == 2  # the same version, resumed
    assert (await site.store.totals(2)).count == sum(map(len, site.source.log.values()))


async def test_an_interrupted_rebuild_leaves_the_live_version_and_resumes() -> None:
    site = Site()
    site.write(6)
    await site.fold_live()
    site.stop.set()
    with pytest.raises(InterruptedRebuild):
        await site.rebuild().run(RebuildOptions())
    assert site.states() == {1: "active", 2: "building"}
    site.stop.clear()
    assert await site.rebuild().run(RebuildOptions()) == EXIT_OK
    assert site.states() == {2: "active"}


class FailingDrop(InMemoryVersionCatalog):
    async def drop(self, version: int) -> None:
        raise StoreUnavailable("connection lost")


async def test_a_failed_drop_after_the_swap_still_succeeds_and_abort_cleans_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = Site()
    site.catalog = FailingDrop(site.store)
    site.write(3)
    await site.fold_live()
    assert await site.rebuild().run(RebuildOptions()) == EXIT_OK
    assert site.states() == {1: "retired", 2: "active"}
    assert "`rebuild --abort` removes it" in caplog.text
    assert await abort(InMemoryVersionCatalog(site.store)) == [1]


async def test_a_second_rebuild_is_refused_while_one_runs() -> None:
    site = Site()
    assert site.catalog is not None
    async with site.catalog.rebuild_lock():
        with pytest.raises(RebuildLockedError):
            await site.rebuild().run(RebuildOptions())
