"""Single POST and batch ingest: the command API (durable 201s, acks=all) against the no-op
endpoint with the same JWT check and the same validation, both under the same uvicorn
settings on the same core, driven by wrk from the other core; runs interleaved."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.procs import Service, running
from bench.report import Row, Series, cpu_summary, paired_ratio
from bench.scenarios import CLIENT_CPUS, SERVER_CPUS, Context
from bench.wrk import LoadResult, Request, run_wrk

BATCH_ITEMS = 1000


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _timestamp() -> str:
    # In the past (old timestamps are valid), so a body stays valid for the whole run.
    moment = datetime.now(UTC) - timedelta(minutes=1)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def single_body() -> bytes:
    return json.dumps({"amount": "12.34", "timestamp": _timestamp()}).encode()


def batch_body(items: int = BATCH_ITEMS) -> bytes:
    stamp = _timestamp()
    transactions = [
        {
            "amount": f"{1 + index % 9999}.{index % 100:02d}",
            "timestamp": stamp,
            "transaction_id": f"bench-{index}",
        }
        for index in range(items)
    ]
    return json.dumps({"transactions": transactions}).encode()


def _run(ctx: Context, service: Service, request: Request, connections: int) -> LoadResult:
    result = run_wrk(
        service.url,
        request,
        seconds=ctx.seconds,
        connections=connections,
        client_cpus=CLIENT_CPUS,
        watch=[service.watched(), *ctx.watch_infra],
    )
    if result.failed:
        ctx.progress(f"{service.name}: failed requests {result.errors}; see {service.log_path}")
    return result


def _summary(results: list[LoadResult], scale: int = 1) -> dict[str, Any]:
    return {
        "per_second": Series.of([r.rps * scale for r in results]).to_json(),
        "p50_ms": Series.of([r.p50_ms for r in results]).to_json(),
        "p99_ms": Series.of([r.p99_ms for r in results]).to_json(),
        "requests": [r.requests for r in results],
        "failed": [r.errors for r in results],
        "cpu": [{"client": r.client_cpu, **r.cpu} for r in results],
    }


async def run(ctx: Context) -> None:
    topic = await ctx.infra.new_topic()
    token = ctx.infra.token()
    env = ctx.infra.service_env(topic=topic.topic)
    real = Service.api("command_api", env=env, cpus=SERVER_CPUS, log_dir=ctx.log_dir)
    noop = Service.uvicorn(
        "noop_command",
        "bench.baselines:noop_command_app",
        env=env,
        cpus=SERVER_CPUS,
        log_dir=ctx.log_dir,
    )
    single = Request("POST", "/transactions", _headers(token), single_body())
    batch = Request("POST", "/transactions/batch", _headers(token), batch_body())
    with running(real, noop):
        for kind, request, connections in (
            ("single", single, ctx.connections),
            ("batch", batch, ctx.batch_connections),
        ):
            ctx.progress(f"ingest ({kind}): warm-up")
            for service in (real, noop):
                run_wrk(
                    service.url,
                    request,
                    seconds=ctx.warmup_seconds,
                    connections=connections,
                    client_cpus=CLIENT_CPUS,
                )
            measured: list[LoadResult] = []
            baseline: list[LoadResult] = []
            for index in range(ctx.runs):
                ctx.progress(f"ingest ({kind}): run {index + 1}/{ctx.runs}")
                # ABBA order: a drift in the machine's load favours neither side.
                pair = [(real, measured), (noop, baseline)]
                for service, results in pair if index % 2 == 0 else reversed(pair):
                    results.append(_run(ctx, service, request, connections))
            _record(ctx, kind, measured, baseline, connections)


def _record(
    ctx: Context,
    kind: str,
    measured: list[LoadResult],
    baseline: list[LoadResult],
    connections: int,
) -> None:
    scale = BATCH_ITEMS if kind == "batch" else 1
    unit = " tx/s" if kind == "batch" else " req/s"
    failed = sum(r.failed for r in measured) + sum(r.failed for r in baseline)
    failures = f"; **{failed} failed requests**" if failed else ""
    rate = Series.of([r.rps * scale for r in measured])
    base = Series.of([r.rps * scale for r in baseline])
    ratios = paired_ratio(rate.values, base.values)
    ratio = ratios.median
    p50 = Series.of([r.p50_ms for r in measured])
    p99 = Series.of([r.p99_ms for r in measured])
    cpu = cpu_summary(
        [{"client": r.client_cpu, **r.cpu} for r in measured],
        ["client", "command_api", "kafka", "postgres"],
    )
    base_cpu = cpu_summary(
        [{"client": r.client_cpu, **r.cpu} for r in baseline], ["client", "noop_command"]
    )
    ctx.report.data[f"ingest_{kind}"] = {
        "connections": connections,
        "seconds": ctx.seconds,
        "items_per_request": scale,
        "measured": _summary(measured, scale),
        "baseline": _summary(baseline, scale),
        "ratio": ratios.to_json(),
    }
    if kind == "single":
        ctx.report.add(
            Row(
                scenario=f"single POST ingest, {connections} conns",
                measured=f"{rate.describe(unit)}; p50 {p50.median:.1f} ms, "
                f"p99 {p99.median:.1f} ms{failures}",
                baseline=f"no-op endpoint: {base.describe(unit)}",
                ratio=f"{ratios.describe('x', 2)}",
                target=">= 0.75x",
                met=ratio >= 0.75,
                cpu=f"{cpu}; baseline {base_cpu}",
            )
        )
    else:
        ctx.report.add(
            Row(
                scenario=f"batch ingest, {BATCH_ITEMS}-item batches, {connections} conns",
                measured=f"{rate.describe(unit)}; p50 {p50.median:.0f} ms, "
                f"p99 {p99.median:.0f} ms{failures}",
                baseline=f"no-op endpoint: {base.describe(unit)}",
                ratio=f"{ratios.describe('x', 2)}",
                target=">= 100,000 tx/s",
                met=rate.median >= 100_000,
                cpu=f"{cpu}; baseline {base_cpu}",
            )
        )
