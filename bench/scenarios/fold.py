"""The projector's fold of a 1,000,000-event log against the naive projector (one UPDATE and
offset commit per event, see bench/naive.py), each run into a fresh database, both pinned to
the same core. The naive one is measured on a prefix of the same log (it would take many
minutes for the whole of it): events/s are compared, and the table says so."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass

import asyncpg

from bench.load import append_events, synthetic_events
from bench.procs import BenchError, CpuMeter, Service
from bench.report import Row, Series, cpu_summary, paired_ratio
from bench.scenarios import SERVER_CPUS, Context
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


async def load_log(ctx: Context, events: int) -> KafkaSettings:
    topic = await ctx.infra.new_topic()
    ctx.progress(f"appending {events:,} events to {topic.topic}")
    count, seconds = await append_events(topic, synthetic_events(events))
    ctx.progress(f"appended {count:,} events in {seconds:.1f} s ({count / seconds:,.0f}/s)")
    return topic


def projector_service(
    ctx: Context, topic: KafkaSettings, database_url: str, *, cpus: str | None = SERVER_CPUS
) -> Service:
    env = ctx.infra.service_env(
        topic=topic.topic,
        database_url=database_url,
        PROJECTOR_GROUP_ID=f"bench-{uuid.uuid4().hex[:12]}",
        PROJECTOR_HTTP_PORT="0",
    )
    return Service(
        "projector",
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
    ctx: Context, service: Service, database_url: str, target: int, *, budget: float
) -> FoldRun:
    """Start `service`, time it from its first committed batch until `target` offsets are
    stored (or `budget` seconds have passed), stop it."""
    conn = await asyncpg.connect(database_url)
    meter = CpuMeter([])
    try:
        service.start()
        meter = CpuMeter([service.watched(), *ctx.watch_infra])
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
            if not service.alive():
                raise BenchError(f"{service.name} exited; see {service.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"{service.name} made no progress; see {service.log_path}")
            await asyncio.sleep(POLL_SECONDS)
        shares = meter.stop()
    finally:
        service.stop()
        await conn.close()
    assert first is not None
    return FoldRun(consumed - first[1], now - first[0], counted, shares)


async def run(ctx: Context, topic: KafkaSettings) -> str:
    """Fold `topic` (ctx.events long) `runs` times with the real projector and the naive one;
    return the URL of a database holding the complete projection (for the read benchmark)."""
    measured: list[FoldRun] = []
    naive: list[FoldRun] = []
    keep: str | None = None
    for index in range(ctx.runs):
        ctx.progress(f"fold: projector run {index + 1}/{ctx.runs}")
        url = await ctx.infra.new_database()
        result = await fold_until(
            ctx, projector_service(ctx, topic, url), url, ctx.events, budget=600
        )
        if result.counted != ctx.events:
            raise BenchError(f"the projector counted {result.counted:,} of {ctx.events:,} events")
        measured.append(result)
        if keep is not None:
            await ctx.infra.drop_database(keep)
        keep = url
        ctx.progress(f"fold: naive run {index + 1}/{ctx.runs}")
        naive_url = await ctx.infra.new_database()
        naive.append(
            await fold_until(
                ctx,
                naive_service(ctx, topic, naive_url, ctx.naive_events),
                naive_url,
                ctx.naive_events,
                budget=max(10.0, ctx.seconds * 2),
            )
        )
        await ctx.infra.drop_database(naive_url)
    _record(ctx, measured, naive)
    assert keep is not None
    return keep


def _record(ctx: Context, measured: list[FoldRun], naive: list[FoldRun]) -> None:
    rate = Series.of([r.rate for r in measured])
    base = Series.of([r.rate for r in naive])
    ratios = paired_ratio(rate.values, base.values)
    ratio = ratios.median
    naive_events = min(r.events for r in naive)
    ctx.report.data["fold"] = {
        "log_events": ctx.events,
        "measured": {
            "events_per_s": rate.to_json(),
            "seconds": [r.seconds for r in measured],
            "cpu": [r.cpu for r in measured],
        },
        "naive": {
            "events_per_s": base.to_json(),
            "events": [r.events for r in naive],
            "seconds": [r.seconds for r in naive],
            "cpu": [r.cpu for r in naive],
        },
        "ratio": ratios.to_json(),
    }
    ctx.report.add(
        Row(
            scenario=f"projector fold, {ctx.events:,}-event log",
            measured=f"{rate.describe(' events/s')}",
            baseline=f"naive projector: {base.describe(' events/s')}, measured on the first "
            f"{naive_events:,} events of the same log",
            ratio=f"{ratios.describe('x')}",
            target=">= 150,000 events/s and >= 30x",
            met=rate.median >= 150_000 and ratio >= 30,
            cpu=f"{cpu_summary([r.cpu for r in measured], ['projector', 'kafka', 'postgres'])}; "
            f"naive {cpu_summary([r.cpu for r in naive], ['naive_projector', 'postgres'])}",
        )
    )
