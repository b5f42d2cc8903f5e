"""Freshness: the time from a POST's 201 to the event being visible in `/stats`, at a steady
1,000 tx/s (open loop, paced every 10 ms: each tick one single POST, the probe, and one batch
POST with the other 9 transactions, the way a high-frequency producer uses the batch
endpoint). Right after a probe's 201 the client asks
`GET /stats?consistency_token=<its token>&wait_ms=5000`, which answers once the projection
covers the event; the probe's freshness is the time from the 201 to that answer (so it
includes one GET round trip: an upper bound). The paced client runs in this process on the
client CPU; the command API, projector and query API share the other."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.http import Pool
from bench.procs import CpuMeter, Watched
from bench.report import Row, Series, cpu_summary
from bench.scenarios import SERVER_CPUS, Context
from bench.scenarios.live import LiveStack, live_stack, percentile, post_paced

SERVICE_CPUS = SERVER_CPUS  # the command API, projector and query API share one CPU
WAIT_MS = 5000


@dataclass(slots=True)
class Paced:
    posts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    post_ms: list[float] = field(default_factory=list)
    fresh_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.posts / self.seconds if self.seconds else 0.0


async def paced_load(
    stack: LiveStack, token: str, *, rate: int, seconds: float, watch: list[Watched]
) -> Paced:
    posts, gets = Pool(stack.command.url, limit=256), Pool(stack.query.url, limit=256)
    result = Paced()

    async def probe(payload: bytes, started: float, accepted: float) -> None:
        result.post_ms.append(1000 * (accepted - started))
        token = json.loads(payload)["consistency_token"]
        target = f"/stats?consistency_token={token}&wait_ms={WAIT_MS}"
        status, _ = await gets.request("GET", target, {})
        if status != 200:
            result.errors[f"GET {status}"] += 1
            return
        result.fresh_ms.append(1000 * (time.perf_counter() - accepted))

    loop = asyncio.get_running_loop()
    meter = CpuMeter(watch)
    meter.start()
    begin = loop.time()
    tasks = await post_paced(posts, token, rate=rate, seconds=seconds, tally=result, on_probe=probe)
    if tasks:
        await asyncio.wait(tasks, timeout=WAIT_MS / 1000 + 10)
    result.seconds = loop.time() - begin
    result.cpu = meter.stop()
    posts.close()
    gets.close()
    return result


async def run(ctx: Context) -> None:
    topic = await ctx.infra.new_topic()
    url = await ctx.infra.new_database()
    token = ctx.infra.token()
    env = ctx.infra.service_env(topic=topic.topic, database_url=url)
    runs: list[Paced] = []
    with live_stack(ctx, topic, url, env, SERVICE_CPUS) as stack:
        ctx.progress("freshness: warm-up")
        await paced_load(stack, token, rate=ctx.fresh_rate, seconds=ctx.warmup_seconds, watch=[])
        for index in range(ctx.runs):
            ctx.progress(f"freshness: run {index + 1}/{ctx.runs}")
            paced = await paced_load(
                stack, token, rate=ctx.fresh_rate, seconds=ctx.fresh_seconds, watch=stack.watch
            )
            if paced.errors:
                ctx.progress(f"freshness: failed requests: {dict(paced.errors)}")
            runs.append(paced)
    _record(ctx, runs)


def _record(ctx: Context, runs: list[Paced]) -> None:
    p50 = Series.of([percentile(r.fresh_ms, 50) for r in runs])
    p99 = Series.of([percentile(r.fresh_ms, 99) for r in runs])
    rate = Series.of([r.rate for r in runs])
    post_p99 = Series.of([percentile(r.post_ms, 99) for r in runs])
    failed = sum(sum(r.errors.values()) for r in runs)
    data: dict[str, Any] = {
        "failed_requests": [dict(r.errors) for r in runs],
        "rate_tx_per_s": rate.to_json(),
        "fresh_p50_ms": p50.to_json(),
        "fresh_p99_ms": p99.to_json(),
        "fresh_max_ms": [max(r.fresh_ms, default=0) for r in runs],
        "post_p50_ms": [percentile(r.post_ms, 50) for r in runs],
        "post_p99_ms": post_p99.to_json(),
        "probes": [len(r.fresh_ms) for r in runs],
        "cpu": [r.cpu for r in runs],
        "fresh_mean_ms": [statistics.fmean(r.fresh_ms) for r in runs if r.fresh_ms],
    }
    ctx.report.data["freshness"] = data
    ctx.report.add(
        Row(
            scenario=f"freshness, POST 201 -> visible in /stats, at {rate.median:,.0f} tx/s",
            measured=f"p99 {p99.describe(' ms', 1)}, p50 {p50.median:.1f} ms "
            f"({sum(len(r.fresh_ms) for r in runs):,} probes); "
            f"probe POST p99 {post_p99.median:.1f} ms"
            + (f"; **{failed} failed requests**" if failed else ""),
            baseline="—",
            ratio="—",
            target="p99 <= 100 ms",
            met=p99.median <= 100 and not failed,
            cpu=cpu_summary(
                [r.cpu for r in runs],
                ["client", "command_api", "projector", "query_api", "kafka", "postgres"],
            ),
            key="freshness",
            figures={"p99_ms": p99.median, "rate": rate.median},
        )
    )
