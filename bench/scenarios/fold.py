"""The projector's fold of a 1,000,000-event log, each run into a fresh database, against the
consumer ceiling (a bare `getmany` draining the same log, no decoding, bench/ceilings.py) and
the naive projector (one UPDATE and offset commit per event, bench/naive.py), all pinned to
the same core; and two projector processes in one group, one per core. The naive one is
measured on a prefix of the same log (it would take many minutes for the whole of it):
events/s are compared, and the table says so."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from bench.ceilings import Ceiling, measure
from bench.load import append_events, synthetic_events
from bench.procs import BenchError, CpuMeter, Service
from bench.report import Row, Series, cpu_summary, median_of, paired_ratio
from bench.scenarios import BOTH_CPUS, SERVER_CPUS, Context
from shared.settings import KafkaSettings

POLL_SECONDS = 0.05
CONSUMED = (
    "SELECT coalesce(sum(next_offset), 0)::bigint, coalesce(sum(tx_count), 0)::bigint "
    "FROM partition_totals WHERE version = 1"
)


@dataclass(frozen=True, slots=True)
class FoldRun:
    events: int
    seconds: float
    counted: int
    cpu: dict[str, float]

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
) -> Service:
    env = ctx.infra.service_env(
        topic=topic.topic,
        database_url=database_url,
        PROJECTOR_GROUP_ID=group or f"bench-{uuid.uuid4().hex[:12]}",
        PROJECTOR_HTTP_PORT="0",
    )
    return Service(
        name,
        [sys.executable, "-m", "projector", "run"],
        env=env,
        cpus=cpus,
        log_dir=ctx.log_dir,
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
    ctx: Context, services: list[Service], database_url: str, target: int, *, budget: float
) -> FoldRun:
    """Start `services`, time them from the first committed batch until `target` offsets are
    stored (or `budget` seconds have passed), stop them."""
    conn = await asyncpg.connect(database_url)
    meter = CpuMeter([])
    try:
        for service in services:
            service.start()
        meter = CpuMeter([*(s.watched() for s in services), *ctx.watch_infra])
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + budget + 120
        while True:
            row = await conn.fetchrow(CONSUMED)
            consumed, counted = (row[0], row[1]) if row is not None else (0, 0)
            now = time.perf_counter()
            if first is None and consumed > 0:
                first = (now, consumed)
                meter.start()
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
        for service in services:
            service.stop()
        await conn.close()
    assert first is not None
    return FoldRun(consumed - first[1], now - first[0], counted, shares)


async def run(ctx: Context, topic: KafkaSettings) -> str:
    """Fold `topic` (ctx.events long) `runs` times with one projector process, with two in
    one group (one per core), and with the naive projector; drain it with the bare consumer;
    return the URL of a database holding the complete projection (for the read benchmark)."""
    measured: list[FoldRun] = []
    pairs: list[FoldRun] = []
    naive: list[FoldRun] = []
    ceilings: list[Ceiling] = []
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
    assert keep is not None
    return keep


async def _fold_with_two(ctx: Context, topic: KafkaSettings) -> FoldRun:
    url = await ctx.infra.new_database()
    group = f"bench-{uuid.uuid4().hex[:12]}"
    services = [
        projector_service(ctx, topic, url, cpus=cpu, name=f"projector_{cpu}", group=group)
        for cpu in BOTH_CPUS
    ]
    result = await fold_until(ctx, services, url, ctx.events, budget=600)
    _check_counted(result, ctx.events)
    await ctx.infra.drop_database(url)
    return result


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
    }
    cpu = cpu_summary([r.cpu for r in measured], ["projector", "kafka", "postgres"])
    ctx.report.add(
        Row(
            scenario=f"projector fold, {ctx.events:,}-event log, one process",
            measured=f"{rate.describe(' events/s')}",
            baseline=f"consumer ceiling (bare `getmany`, no decoding): "
            f"{ceiling.describe(' records/s')}, {ceiling_cpu.median:.1f} µs CPU/record",
            ratio=f"{to_ceiling.describe('x', 2)}",
            target=">= 0.60x, <= 15 µs projector CPU/event",
            met=to_ceiling.median >= 0.60 and per_event.median <= 15,
            cpu=f"{cpu}; projector {per_event.median:.1f} µs CPU/event",
            key="fold",
            figures={
                "rate": rate.median,
                "ratio": to_ceiling.median,
                "cpu_us": per_event.median,
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
            target="report",
            met=None,
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
    }
