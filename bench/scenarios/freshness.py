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
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.http import HttpError, Pool
from bench.procs import CpuMeter, Service, Watched, running
from bench.report import Row, Series, cpu_summary
from bench.scenarios import SERVER_CPUS, Context
from bench.scenarios.fold import projector_service

TICK_SECONDS = 0.01
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


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def paced_load(
    command: Service,
    query: Service,
    token: str,
    *,
    rate: int,
    seconds: float,
    watch: list[Watched],
) -> Paced:
    posts, gets = Pool(command.url, limit=256), Pool(query.url, limit=256)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    result = Paced()
    tasks: set[asyncio.Task[None]] = set()

    async def one(items: int) -> None:
        """POST `items` transactions: one (a probe) as a single POST, more as a batch."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        item = {"amount": "1.00", "timestamp": stamp}
        probe = items == 1
        path = "/transactions" if probe else "/transactions/batch"
        body = json.dumps(item if probe else {"transactions": [item] * items}).encode()
        started = time.perf_counter()
        try:
            status, payload = await posts.request("POST", path, headers, body)
            accepted = time.perf_counter()
            if status != 201:
                result.errors[f"POST {status}"] += 1
                return
            result.posts += items
            if probe:
                result.post_ms.append(1000 * (accepted - started))
                token = json.loads(payload)["consistency_token"]
                target = f"/stats?consistency_token={token}&wait_ms={WAIT_MS}"
                status, _ = await gets.request("GET", target, {})
                if status != 200:
                    result.errors[f"GET {status}"] += 1
                    return
                result.fresh_ms.append(1000 * (time.perf_counter() - accepted))
        except (OSError, HttpError, ValueError, KeyError) as err:
            result.errors[type(err).__name__] += 1

    per_tick = max(1, round(rate * TICK_SECONDS))
    loop = asyncio.get_running_loop()
    meter = CpuMeter(watch)
    meter.start()
    begin = loop.time()
    while (now := loop.time()) < begin + seconds:
        for items in (1, per_tick - 1) if per_tick > 1 else (1,):
            task = asyncio.create_task(one(items))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        ticks = int((now - begin) / TICK_SECONDS) + 1
        await asyncio.sleep(max(0.0, begin + ticks * TICK_SECONDS - loop.time()))
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
    command = Service.api("command_api", env=env, cpus=SERVICE_CPUS, log_dir=ctx.log_dir)
    query = Service.api("query_api", env=env, cpus=SERVICE_CPUS, log_dir=ctx.log_dir)
    projector = projector_service(ctx, topic, url, cpus=SERVICE_CPUS)
    runs: list[Paced] = []
    with running(command, query, projector):
        watch = [
            Watched("client", os.getpid()),
            command.watched(),
            query.watched(),
            projector.watched(),
            *ctx.watch_infra,
        ]
        ctx.progress("freshness: warm-up")
        await paced_load(
            command, query, token, rate=ctx.fresh_rate, seconds=ctx.warmup_seconds, watch=[]
        )
        for index in range(ctx.runs):
            ctx.progress(f"freshness: run {index + 1}/{ctx.runs}")
            paced = await paced_load(
                command, query, token, rate=ctx.fresh_rate, seconds=ctx.fresh_seconds, watch=watch
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
        )
    )
