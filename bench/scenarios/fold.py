"""The projector's fold of a 1,000,000-event log, each run into a fresh database, against the
consumer ceiling (a bare `getmany` draining the same log, no decoding, bench/ceilings.py) and
the naive projector (one UPDATE and offset commit per event, bench/naive.py), all pinned to
the same core; and two projector processes in one group, one per core. The naive one is
measured on a prefix of the same log (it would take many minutes for the whole of it):
events/s are compared, and the table says so.

Also from the same runs: lock waits (the fold's backends seen waiting on a heavyweight lock,
`wait_event_type = 'Lock'` in pg_stat_activity, sampled while it folds; with `--before`, two
projectors of that checkout too), the CPU per event of two projectors against one, the cost of
keeping each id's first occurrence (the fold again with a store that keeps none,
bench/without_first_occurrences.py), and the rebalance pause when a second projector joins a
folding group and leaves it again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench.ceilings import Ceiling, measure
from bench.load import append_events, synthetic_events
from bench.procs import ROOT, BenchError, CpuMeter, Service
from bench.report import Row, Series, cpu_summary, median_of, paired_ratio
from bench.scenarios import BOTH_CPUS, SERVER_CPUS, Context
from shared.settings import KafkaSettings
from tests.provenance import commit

POLL_SECONDS = 0.05
CONSUMED = (
    "SELECT coalesce(sum(next_offset), 0)::bigint, coalesce(sum(tx_count), 0)::bigint "
    "FROM partition_totals WHERE version = 1"
)
# Often enough to see a wait of a few milliseconds on the 2-core box; each sample is one
# small scan of PostgreSQL's backend array.
LOCK_SAMPLE_SECONDS = 0.01
LOCK_WAITS = (
    "SELECT wait_event, count(*)::int FROM pg_stat_activity "
    "WHERE datname = $1 AND wait_event_type = 'Lock' GROUP BY wait_event"
)
OFFSETS = (
    "SELECT partition, next_offset, log_end_offset AS log_end FROM partition_totals "
    "WHERE version = 1"
)
# The rebalance run joins and leaves while the log still has events to fold for a while.
REBALANCE_EVENTS = 600_000
REBALANCE_LIMIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class FoldRun:
    events: int
    seconds: float
    counted: int
    cpu: dict[str, float]
    lock_samples: int = 0
    # backends seen waiting, summed over the samples, by what they waited for
    lock_waits: dict[str, int] = field(default_factory=dict)

    @property
    def waits(self) -> int:
        return sum(self.lock_waits.values())

    def cpu_us_total(self, names: tuple[str, ...]) -> float:
        return sum(self.cpu_us(name) for name in names)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def cpu_us(self, name: str) -> float:
        """CPU microseconds per folded event spent by the process `name`."""
        return self.cpu.get(name, 0.0) / 100 * self.seconds / self.events * 1e6


async def load_log(ctx: Context, events: int) -> KafkaSettings:
    topic = await ctx.infra.new_topic()
    ctx.progress(f"appending {events:,} events to {topic.topic}")
    count, seconds = await append_events(topic, synthetic_events(events))
    ctx.progress(f"appended {count:,} events in {seconds:.1f} s ({count / seconds:,.0f}/s)")
    return topic


def projector_service(
    ctx: Context,
    topic: KafkaSettings,
    database_url: str,
    *,
    cpus: str | None = SERVER_CPUS,
    name: str = "projector",
    group: str | None = None,
    command: tuple[str, ...] = ("projector", "run"),
    cwd: Path | None = None,
    log_level: str = "WARNING",
) -> Service:
    """`python -m projector run` (or another `command`), from the checkout `cwd` (another
    commit's, to compare with) or this one."""
    env = ctx.infra.service_env(
        topic=topic.topic,
        database_url=database_url,
        PROJECTOR_GROUP_ID=group or f"bench-{uuid.uuid4().hex[:12]}",
        PROJECTOR_HTTP_PORT="0",
        LOG_LEVEL=log_level,
    )
    return Service(
        name,
        [sys.executable, "-m", *command],
        env=env,
        cpus=cpus,
        log_dir=ctx.log_dir,
        cwd=cwd or ROOT,
    )


def naive_service(ctx: Context, topic: KafkaSettings, database_url: str, limit: int) -> Service:
    command = [
        sys.executable,
        "-m",
        "bench.naive",
        "--topic",
        topic.topic,
        "--database-url",
        database_url,
        "--limit",
        str(limit),
    ]
    env = ctx.infra.service_env()
    return Service("naive_projector", command, env=env, cpus=SERVER_CPUS, log_dir=ctx.log_dir)


async def fold_until(
    ctx: Context,
    services: list[Service],
    database_url: str,
    target: int,
    *,
    budget: float,
    partitions: int | None = None,
) -> FoldRun:
    """Start `services`, time them from the first committed batch until `target` offsets are
    stored (or `budget` seconds have passed), stop them; sample lock waits meanwhile. With
    `partitions` (several members of one group, logging at INFO), time them only once the
    group has settled: the members start one after the other, and the first to join folds
    alone until the next one's join has rebalanced the group."""
    conn = await asyncpg.connect(database_url)
    meter = CpuMeter([])
    locks = LockSampler(database_url)
    sampling = asyncio.create_task(locks.run())
    marks = {s.name: s.log_path.stat().st_size if s.log_path.exists() else 0 for s in services}
    try:
        for service in services:
            service.start()
        meter = CpuMeter([*(s.watched() for s in services), *ctx.watch_infra])
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + budget + 120
        while True:
            try:
                row = await conn.fetchrow(CONSUMED)
            except asyncpg.UndefinedTableError:  # not migrated yet (another checkout's)
                row = None
            consumed, counted = (row[0], row[1]) if row is not None else (0, 0)
            now = time.perf_counter()
            if (
                first is None
                and consumed > 0
                and (partitions is None or _settled(services, marks, partitions))
            ):
                first = (now, consumed)
                meter.start()
            if consumed >= target and first is None:
                msg = "the log was folded before the group settled: fold a longer log (--events)"
                raise BenchError(msg)
            if consumed >= target or (first is not None and now - first[0] > budget):
                break
            for service in services:
                if not service.alive():
                    raise BenchError(f"{service.name} exited; see {service.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"no progress; see {services[0].log_path}")
            await asyncio.sleep(POLL_SECONDS)
        shares = meter.stop()
    finally:
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
        for service in services:
            service.stop()
        await conn.close()
    assert first is not None
    return FoldRun(
        consumed - first[1], now - first[0], counted, shares, locks.samples, dict(locks.waits)
    )


@dataclass(slots=True)
class LockSampler:
    """Every `LOCK_SAMPLE_SECONDS`, the backends of one database waiting on a heavyweight lock
    (another transaction's row, tuple or transaction lock, a relation lock, the NOTIFY queue's
    commit lock): how many samples, and how many waiters they saw, by wait event."""

    database_url: str
    samples: int = 0
    waits: Counter[str] = field(default_factory=Counter)

    async def run(self) -> None:
        name = urlsplit(self.database_url).path.lstrip("/")
        conn = await asyncpg.connect(self.database_url)
        try:
            while True:
                for event, count in await conn.fetch(LOCK_WAITS, name):
                    self.waits[str(event)] += count
                self.samples += 1
                await asyncio.sleep(LOCK_SAMPLE_SECONDS)
        finally:
            await conn.close()


@dataclass(slots=True)
class FoldRuns:
    measured: list[FoldRun] = field(default_factory=list)
    pairs: list[FoldRun] = field(default_factory=list)
    pairs_before: list[FoldRun] = field(default_factory=list)
    measured_before: list[FoldRun] = field(default_factory=list)
    without_first: list[FoldRun] = field(default_factory=list)
    naive: list[FoldRun] = field(default_factory=list)
    ceilings: list[Ceiling] = field(default_factory=list)
    joins: list[float] = field(default_factory=list)
    leaves: list[float] = field(default_factory=list)


async def run(ctx: Context, topic: KafkaSettings, before: Path | None = None) -> str:
    """Fold `topic` (ctx.events long) `runs` times with one projector process, with two in
    one group (one per core), with one keeping no first occurrences, and with the naive
    projector; drain it with the bare consumer; time a rebalance; with `before`, fold with
    two projectors of that checkout too. Return the URL of a database holding the complete
    projection (for the read benchmark)."""
    runs = FoldRuns()
    measured, pairs, naive, ceilings = runs.measured, runs.pairs, runs.naive, runs.ceilings
    rebalance_log = topic if ctx.events >= REBALANCE_EVENTS else None
    keep: str | None = None
    for index in range(ctx.runs):
        ctx.progress(f"fold: projector run {index + 1}/{ctx.runs}")
        url = await ctx.infra.new_database()
        result = await fold_until(
            ctx, [projector_service(ctx, topic, url)], url, ctx.events, budget=600
        )
        _check_counted(result, ctx.events)
        measured.append(result)
        if keep is not None:
            await ctx.infra.drop_database(keep)
        keep = url
        ctx.progress(f"fold: consumer ceiling run {index + 1}/{ctx.runs}")
        ceilings.append(measure("consume", topic, ctx.events, cpus=SERVER_CPUS))
        ctx.progress(f"fold: two projectors, run {index + 1}/{ctx.runs}")
        pairs.append(await _fold_with_two(ctx, topic))
        if before is not None:
            ctx.progress(f"fold: one projector at {before}, run {index + 1}/{ctx.runs}")
            runs.measured_before.append(await _fold_before(ctx, topic, before))
            ctx.progress(f"fold: two projectors at {before}, run {index + 1}/{ctx.runs}")
            runs.pairs_before.append(await _fold_with_two(ctx, topic, before=before))
        ctx.progress(f"fold: without first occurrences, run {index + 1}/{ctx.runs}")
        runs.without_first.append(await _fold_without_first(ctx, topic))
        if rebalance_log is None:
            rebalance_log = await load_log(ctx, REBALANCE_EVENTS)
        ctx.progress(f"fold: a projector joins and leaves, run {index + 1}/{ctx.runs}")
        join, leave = await _rebalance(ctx, rebalance_log)
        runs.joins.append(join)
        runs.leaves.append(leave)
        ctx.progress(f"fold: naive run {index + 1}/{ctx.runs}")
        naive_url = await ctx.infra.new_database()
        naive.append(
            await fold_until(
                ctx,
                [naive_service(ctx, topic, naive_url, ctx.naive_events)],
                naive_url,
                ctx.naive_events,
                budget=max(10.0, ctx.seconds * 2),
            )
        )
        await ctx.infra.drop_database(naive_url)
    _record(ctx, measured, pairs, naive, ceilings)
    _record_projectors(ctx, runs, before)
    assert keep is not None
    return keep


async def _fold_with_two(
    ctx: Context, topic: KafkaSettings, *, before: Path | None = None
) -> FoldRun:
    """Two projectors in one group, one per core; `before`: of that checkout, into a database
    it migrated."""
    url = await (ctx.infra.new_database() if before is None else migrated_by(ctx, before))
    group = f"bench-{uuid.uuid4().hex[:12]}"
    services = [
        projector_service(
            ctx,
            topic,
            url,
            cpus=cpu,
            name=f"projector_{cpu}" + ("_before" if before else ""),
            group=group,
            cwd=before,
            log_level="INFO",
        )
        for cpu in BOTH_CPUS
    ]
    return await _fold_whole_log(ctx, services, url, partitions=topic.partitions)


async def _fold_whole_log(
    ctx: Context, services: list[Service], url: str, *, partitions: int | None = None
) -> FoldRun:
    """`services` fold the whole log into `url`, which is dropped afterwards; every event
    must have been counted."""
    try:
        result = await fold_until(ctx, services, url, ctx.events, budget=600, partitions=partitions)
    finally:
        await ctx.infra.drop_database(url)
    _check_counted(result, ctx.events)
    return result


async def migrated_by(ctx: Context, checkout: Path) -> str:
    """A new database migrated by the checkout's own `python -m projector migrate`; with no
    such command (a checkout from before it) left empty: that projector migrated at start."""
    url = await ctx.infra.empty_database()
    if "migrate" not in (checkout / "projector" / "__main__.py").read_text():
        return url
    env = ctx.infra.service_env(database_url=url)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "projector", "migrate"],
        cwd=checkout,
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"migrating at {checkout} failed: {done.stderr.decode()[-2000:]}")
    return url


async def _fold_before(ctx: Context, topic: KafkaSettings, before: Path) -> FoldRun:
    """One projector of the checkout `before`, into a database it migrated."""
    url = await migrated_by(ctx, before)
    service = projector_service(ctx, topic, url, name="projector_before", cwd=before)
    return await _fold_whole_log(ctx, [service], url)


async def _fold_without_first(ctx: Context, topic: KafkaSettings) -> FoldRun:
    url = await ctx.infra.new_database()
    service = projector_service(
        ctx,
        topic,
        url,
        name="projector_without_first",
        command=("bench.without_first_occurrences",),
    )
    return await _fold_whole_log(ctx, [service], url)


async def _rebalance(ctx: Context, topic: KafkaSettings) -> tuple[float, float]:
    """One projector folds `topic`; a second joins its group, then leaves it (SIGTERM). Each
    pause: the longest any partition with events left went without advancing its stored offset,
    from the change until the group settled (the joining member logged its assignment, the
    leaving one exited) and then every such partition advanced again."""
    url = await ctx.infra.new_database()
    group = f"bench-{uuid.uuid4().hex[:12]}"
    first, second = (
        projector_service(
            ctx, topic, url, cpus=cpu, name=f"rebalance_{cpu}", group=group, log_level="INFO"
        )
        for cpu in BOTH_CPUS
    )
    conn = await asyncpg.connect(url)
    try:
        first.start()
        await _longest_stall(conn, lambda: True, services=[first], until_folding=True)
        joined_at = second.log_path.stat().st_size if second.log_path.exists() else 0
        second.start()
        join = await _longest_stall(
            conn, lambda: _assigned(second, joined_at), services=[first, second]
        )
        stopping = asyncio.create_task(asyncio.to_thread(second.stop))
        leave = await _longest_stall(conn, lambda: not second.alive(), services=[first])
        await stopping
    finally:
        first.stop()
        second.stop()
        await conn.close()
        await ctx.infra.drop_database(url)
    return join, leave


def _settled(services: list[Service], marks: dict[str, int], partitions: int) -> bool:
    """Every member's latest assignment (logged after byte `marks[name]` of its log) is its
    share of the group's: together they cover the `partitions`, none holds another's."""
    held: list[int] = []
    for service in services:
        latest: list[int] | None = None
        with service.log_path.open("rb") as log:
            log.seek(marks[service.name])
            for line in log:
                if b'"partitions assigned"' in line:
                    latest = [int(p) for p in json.loads(line).get("partitions", [])]
        if not latest:
            return False
        held += latest
    return sorted(held) == list(range(partitions))


def _assigned(member: Service, since: int) -> bool:
    """`member` logged an assignment after byte `since` of its log (the log is appended to)."""
    with member.log_path.open("rb") as log:
        log.seek(since)
        return b"partitions assigned" in log.read()


async def _longest_stall(
    conn: asyncpg.Connection[Any],
    settled: Any,
    *,
    services: list[Service],
    until_folding: bool = False,
) -> float:
    """Poll the stored offsets every POLL_SECONDS until `settled()` and then every partition
    with events left has advanced once more; the longest one went without advancing
    meanwhile. `until_folding`: only wait until every partition has folded something."""
    started = time.monotonic()
    last: dict[int, int] = {}
    advanced: dict[int, float] = {}
    longest = 0.0
    settled_at: float | None = None
    while True:
        now = time.monotonic()
        if now - started > REBALANCE_LIMIT_SECONDS:
            raise BenchError(f"partitions still paused at {last}; see {services[-1].log_path}")
        for service in services:
            if not service.alive() and service is not services[-1]:
                raise BenchError(f"{service.name} exited; see {service.log_path}")
        rows = await conn.fetch(OFFSETS)
        done = {r["partition"] for r in rows if r["log_end"] and r["next_offset"] >= r["log_end"]}
        if len(done) == len(rows) and rows:
            raise BenchError("the log ran out before the group settled: use a longer log")
        for row in rows:
            partition, offset = row["partition"], row["next_offset"]
            if offset > last.get(partition, -1) or partition in done:
                advanced[partition] = now
            last[partition] = offset
            longest = max(longest, now - advanced.get(partition, started))
        if until_folding:
            if rows and all(r["next_offset"] > 0 for r in rows):
                return 0.0
        elif settled_at is None and settled():
            settled_at = now
        if settled_at is not None and advanced and all(t > settled_at for t in advanced.values()):
            return longest
        await asyncio.sleep(POLL_SECONDS)


def _check_counted(result: FoldRun, events: int) -> None:
    if result.counted != events:
        raise BenchError(f"the projector counted {result.counted:,} of {events:,} events")


def _record(
    ctx: Context,
    measured: list[FoldRun],
    pairs: list[FoldRun],
    naive: list[FoldRun],
    ceilings: list[Ceiling],
) -> None:
    rate = Series.of([r.rate for r in measured])
    two = Series.of([r.rate for r in pairs])
    base = Series.of([r.rate for r in naive])
    ceiling = Series.of([c.rate for c in ceilings])
    to_ceiling = paired_ratio(rate.values, ceiling.values)
    to_naive = paired_ratio(rate.values, base.values)
    scaling = paired_ratio(two.values, rate.values)
    per_event = Series.of([r.cpu_us("projector") for r in measured])
    ceiling_cpu = Series.of([c.cpu_us for c in ceilings])
    cpu_to_ceiling = paired_ratio(per_event.values, ceiling_cpu.values)
    naive_events = min(r.events for r in naive)
    ctx.report.data["fold"] = {
        "log_events": ctx.events,
        "measured": _runs_json(measured),
        "two_projectors": _runs_json(pairs),
        "naive": {**_runs_json(naive), "events": [r.events for r in naive]},
        "ceiling": [asdict(c) for c in ceilings],
        "ratio_to_ceiling": to_ceiling.to_json(),
        "ratio_to_naive": to_naive.to_json(),
        "two_projectors_scaling": scaling.to_json(),
        "cpu_ratio_to_ceiling": cpu_to_ceiling.to_json(),
    }
    cpu = cpu_summary([r.cpu for r in measured], ["projector", "kafka", "postgres"])
    ctx.report.add(
        Row(
            scenario=f"projector fold, {ctx.events:,}-event log, one process",
            measured=f"{rate.describe(' events/s')}",
            baseline=f"consumer ceiling (bare `getmany`, no decoding): "
            f"{ceiling.describe(' records/s')}, {ceiling_cpu.median:.1f} µs CPU/record",
            ratio=f"{to_ceiling.describe('x', 2)}; CPU/event {cpu_to_ceiling.describe('x', 2)}"
            " the consumer's",
            target=">= 0.45x; projector CPU/event <= 2x the consumer's CPU/record",
            met=to_ceiling.median >= 0.45 and cpu_to_ceiling.median <= 2.0,
            cpu=f"{cpu}; projector {per_event.median:.1f} µs CPU/event",
            key="fold",
            figures={
                "rate": rate.median,
                "ratio": to_ceiling.median,
                "cpu_us": per_event.median,
                "cpu_ratio": cpu_to_ceiling.median,
                "postgres_pct": median_of([r.cpu for r in measured], "postgres"),
            },
        )
    )
    ctx.report.add(
        Row(
            scenario="projector fold vs the naive projector",
            measured=f"{rate.describe(' events/s')}",
            baseline=f"naive projector: {base.describe(' events/s')}, measured on the first "
            f"{naive_events:,} events of the same log",
            ratio=f"{to_naive.describe('x')}",
            target="—",
            met=None,
            cpu=f"naive {cpu_summary([r.cpu for r in naive], ['naive_projector', 'postgres'])}",
            key="fold_naive",
            figures={"rate": rate.median, "baseline": base.median, "ratio": to_naive.median},
        )
    )
    names = [f"projector_{cpu}" for cpu in BOTH_CPUS]
    ctx.report.add(
        Row(
            scenario="projector fold, two processes in one group (one per core)",
            measured=f"{two.describe(' events/s')}",
            baseline=f"one process: {rate.describe(' events/s')}",
            ratio=f"{scaling.describe('x', 2)}",
            target=">= 1.5x",
            met=scaling.median >= 1.5,
            cpu=cpu_summary([r.cpu for r in pairs], [*names, "kafka", "postgres"]),
            key="fold_two",
            figures={
                "rate": two.median,
                "ratio": scaling.median,
                # every watched process together, % of one core: how busy the machine was
                "busy_pct": sum(
                    median_of([r.cpu for r in pairs], name)
                    for name in (*names, "kafka", "postgres")
                ),
            },
        )
    )


def _runs_json(runs: list[FoldRun]) -> dict[str, Any]:
    return {
        "events_per_s": Series.of([r.rate for r in runs]).to_json(),
        "seconds": [r.seconds for r in runs],
        "cpu": [r.cpu for r in runs],
        "lock_samples": [r.lock_samples for r in runs],
        "lock_waits": [r.lock_waits for r in runs],
    }


def _lock_text(runs: list[FoldRun]) -> str:
    waits = Counter[str]()
    for run in runs:
        waits.update(run.lock_waits)
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in waits.most_common())
    samples = sum(r.lock_samples for r in runs)
    return f"{sum(waits.values()):,} waits in {samples:,} samples" + (
        f" ({kinds})" if kinds else ""
    )


def _record_projectors(ctx: Context, runs: FoldRuns, before: Path | None) -> None:
    """The rows of issue 23: lock waits, two projectors' CPU per event against one's, the
    first occurrences' cost, the rebalance pause."""
    one, two = runs.measured, runs.pairs
    names = tuple(f"projector_{cpu}" for cpu in BOTH_CPUS)
    one_cpu = Series.of([r.cpu_us_total(("projector", "postgres")) for r in one])
    two_cpu = Series.of([r.cpu_us_total((*names, "postgres")) for r in two])
    cpu_ratio = paired_ratio(two_cpu.values, one_cpu.values)
    scaling = paired_ratio([r.rate for r in two], [r.rate for r in one])
    waits = Series.of([r.waits for r in two])
    baseline = "—"
    before_waits: Series | None = None
    if runs.pairs_before:
        before_waits = Series.of([r.waits for r in runs.pairs_before])
        baseline = (
            f"two projectors at {commit(before) if before else '?'}: "
            f"{_lock_text(runs.pairs_before)}; median {before_waits.median:,.0f} a run"
        )
    ctx.report.data["fold_projectors"] = {
        "two_projectors_before": _runs_json(runs.pairs_before),
        "one_projector_before": _runs_json(runs.measured_before),
        "before": str(before) if before else None,
        "without_first": _runs_json(runs.without_first),
        "cpu_us_one": one_cpu.to_json(),
        "cpu_us_two": two_cpu.to_json(),
        "rebalance_join_s": Series.of(runs.joins).to_json(),
        "rebalance_leave_s": Series.of(runs.leaves).to_json(),
    }
    ctx.report.add(
        Row(
            scenario="lock waits while two projectors fold (pg_stat_activity, "
            "wait_event_type = 'Lock', sampled every 10 ms)",
            measured=f"{_lock_text(two)}; median {waits.median:,.0f} a run",
            baseline=baseline,
            ratio="—",
            target="0",
            met=waits.median == 0 and max(waits.values, default=0) == 0,
            cpu="—",
            key="fold_lock_waits",
            figures={
                "waits": waits.median,
                **({"before": before_waits.median} if before_waits else {}),
            },
        )
    )
    ctx.report.add(
        Row(
            scenario="projector fold, two processes in one group: projector + PostgreSQL CPU "
            "per event against one process's",
            measured=f"{two_cpu.describe(' µs/event', 1)}, "
            f"{Series.of([r.rate for r in two]).describe(' events/s')}",
            baseline=f"one process: {one_cpu.describe(' µs/event', 1)}, "
            f"{Series.of([r.rate for r in one]).describe(' events/s')}",
            ratio=f"CPU {cpu_ratio.describe('x', 2)}; events/s {scaling.describe('x', 2)}",
            target="CPU <= 1.10x; events/s >= 1.5x",
            met=cpu_ratio.median <= 1.10 and scaling.median >= 1.5,
            cpu=cpu_summary([r.cpu for r in two], [*names, "kafka", "postgres"]),
            key="fold_two_cpu",
            figures={
                "cpu_ratio": cpu_ratio.median,
                "scaling": scaling.median,
                "cpu_us_one": one_cpu.median,
                "cpu_us_two": two_cpu.median,
            },
        )
    )
    without = runs.without_first
    with_cpu = Series.of([r.cpu_us_total(("projector", "postgres")) for r in one])
    without_cpu = Series.of(
        [r.cpu_us_total(("projector_without_first", "postgres")) for r in without]
    )
    cpu_cost = Series.of(
        [1 - w / m for m, w in zip(with_cpu.values, without_cpu.values, strict=True)]
    )
    rate_cost = Series.of(
        [1 - r.rate / w.rate for r, w in zip(one, without, strict=True) if w.rate]
    )
    ctx.report.add(
        Row(
            scenario="keeping each id's first occurrence (status lookups, conflicts): the fold "
            "with it against the fold without (a bench-only store)",
            measured=f"with: {with_cpu.describe(' µs/event', 1)} projector + PostgreSQL CPU, "
            f"{Series.of([r.rate for r in one]).describe(' events/s')}",
            baseline=f"without: {without_cpu.describe(' µs/event', 1)}, "
            f"{Series.of([r.rate for r in without]).describe(' events/s')}",
            ratio=f"cost: {100 * cpu_cost.median:.1f}% of the CPU per event, "
            f"{100 * rate_cost.median:.1f}% of the rate",
            target="<= 10% of the fold's CPU per event",
            met=cpu_cost.median <= 0.10,
            cpu=cpu_summary(
                [r.cpu for r in without], ["projector_without_first", "kafka", "postgres"]
            ),
            key="fold_first_occurrences",
            figures={"cpu_cost": cpu_cost.median, "rate_cost": rate_cost.median},
        )
    )
    if runs.measured_before:
        then = runs.measured_before
        then_cpu = Series.of([r.cpu_us("projector_before") for r in then])
        now_cpu = Series.of([r.cpu_us("projector") for r in one])
        ctx.report.add(
            Row(
                scenario="projector fold, one process: this checkout against `--before`",
                measured=f"{Series.of([r.rate for r in one]).describe(' events/s')}, "
                f"{now_cpu.describe(' µs projector CPU/event', 1)}",
                baseline=f"at {commit(before) if before else '?'}: "
                f"{Series.of([r.rate for r in then]).describe(' events/s')}, "
                f"{then_cpu.describe(' µs projector CPU/event', 1)}",
                ratio=f"events/s "
                f"{paired_ratio([r.rate for r in one], [r.rate for r in then]).describe('x', 2)}"
                f"; CPU/event {paired_ratio(now_cpu.values, then_cpu.values).describe('x', 2)}",
                target="report",
                met=None,
                cpu=cpu_summary([r.cpu for r in then], ["projector_before", "kafka", "postgres"]),
                key="fold_before",
            )
        )
    joins, leaves = Series.of(runs.joins), Series.of(runs.leaves)
    ctx.report.add(
        Row(
            scenario="rebalance pause: a second projector joins a folding group, then leaves "
            "(SIGTERM); longest any partition went without folding",
            measured=f"join {joins.describe(' s', 2)}; leave {leaves.describe(' s', 2)}",
            baseline="—",
            ratio="—",
            target="report",
            met=None,
            cpu="—",
            key="fold_rebalance",
            figures={"join_s": joins.median, "leave_s": leaves.median},
        )
    )
