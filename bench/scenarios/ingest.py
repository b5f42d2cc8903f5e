"""Single POST and batch ingest: the command API (durable 201s, acks=all) against the no-op
endpoint with the same JWT check and the same validation, both under the same uvicorn
settings on the same core, driven by wrk from the other core; batches also against the
producer ceiling (a bare aiokafka producer appending pre-serialized events with
`send_batch`, pinned to the same core); runs interleaved."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.ceilings import Ceiling, measure
from bench.procs import Service, running
from bench.report import Row, Series, cpu_summary, paired_ratio
from bench.scenarios import CLIENT_CPUS, SERVER_CPUS, Context
from bench.wrk import LoadResult, Request, run_wrk

BATCH_ITEMS = 1000
CEILING_EVENTS = 200_000


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
            ceilings: list[Ceiling] = []
            for index in range(ctx.runs):
                ctx.progress(f"ingest ({kind}): run {index + 1}/{ctx.runs}")
                # ABBA order: a drift in the machine's load favours neither side.
                pair = [(real, measured), (noop, baseline)]
                for service, results in pair if index % 2 == 0 else reversed(pair):
                    results.append(_run(ctx, service, request, connections))
                if kind == "batch":
                    ceilings.append(measure("produce", topic, CEILING_EVENTS, cpus=SERVER_CPUS))
            if kind == "single":
                _record_single(ctx, measured, baseline, connections)
            else:
                _record_batch(ctx, measured, baseline, ceilings, connections)


def _record_single(
    ctx: Context, measured: list[LoadResult], baseline: list[LoadResult], connections: int
) -> None:
    rate = Series.of([r.rps for r in measured])
    base = Series.of([r.rps for r in baseline])
    ratios = paired_ratio(rate.values, base.values)
    p50 = Series.of([r.p50_ms for r in measured])
    p99 = Series.of([r.p99_ms for r in measured])
    ctx.report.data["ingest_single"] = {
        "connections": connections,
        "seconds": ctx.seconds,
        "measured": _summary(measured),
        "baseline": _summary(baseline),
        "ratio": ratios.to_json(),
    }
    ctx.report.add(
        Row(
            scenario=f"single POST ingest, {connections} conns",
            measured=f"{rate.describe(' req/s')}; p50 {p50.median:.1f} ms, "
            f"p99 {p99.median:.1f} ms{_failures(measured, baseline)}",
            baseline=f"no-op endpoint: {base.describe(' req/s')}",
            ratio=f"{ratios.describe('x', 2)}",
            target=">= 0.75x",
            met=ratios.median >= 0.75,
            cpu=f"{_cpu(measured, 'command_api', 1)}; baseline {_cpu(baseline, 'noop_command', 1)}",
            key="ingest_single",
            figures={
                "rate": rate.median,
                "ratio": ratios.median,
                "cpu_us": _cpu_per_item(measured, "command_api", 1).median,
            },
        )
    )


def _record_batch(
    ctx: Context,
    measured: list[LoadResult],
    baseline: list[LoadResult],
    ceilings: list[Ceiling],
    connections: int,
) -> None:
    rate = Series.of([r.rps * BATCH_ITEMS for r in measured])
    base = Series.of([r.rps * BATCH_ITEMS for r in baseline])
    ceiling = Series.of([c.rate for c in ceilings])
    ratios = paired_ratio(rate.values, ceiling.values)
    p50 = Series.of([r.p50_ms for r in measured])
    p99 = Series.of([r.p99_ms for r in measured])
    ceiling_cpu = Series.of([c.cpu_us for c in ceilings])
    ctx.report.data["ingest_batch"] = {
        "connections": connections,
        "seconds": ctx.seconds,
        "items_per_request": BATCH_ITEMS,
        "measured": _summary(measured, BATCH_ITEMS),
        "baseline": _summary(baseline, BATCH_ITEMS),
        "ceiling": [asdict(c) for c in ceilings],
        "ratio_to_ceiling": ratios.to_json(),
        "ratio_to_noop": paired_ratio(rate.values, base.values).to_json(),
    }
    ctx.report.add(
        Row(
            scenario=f"batch ingest, {BATCH_ITEMS}-item batches, {connections} conns",
            measured=f"{rate.describe(' tx/s')}; p50 {p50.median:.0f} ms, "
            f"p99 {p99.median:.0f} ms{_failures(measured, baseline)}",
            baseline=f"producer ceiling (bare `send_batch`, {CEILING_EVENTS:,} events): "
            f"{ceiling.describe(' events/s')}, {ceiling_cpu.median:.1f} µs CPU/event; "
            f"no-op endpoint: {base.describe(' tx/s')}",
            ratio=f"{ratios.describe('x', 2)}",
            target=">= 0.60x",
            met=ratios.median >= 0.60,
            cpu=f"{_cpu(measured, 'command_api', BATCH_ITEMS)}; "
            f"baseline {_cpu(baseline, 'noop_command', BATCH_ITEMS)}",
            key="ingest_batch",
            figures={
                "rate": rate.median,
                "ratio": ratios.median,
                "cpu_us": _cpu_per_item(measured, "command_api", BATCH_ITEMS).median,
            },
        )
    )


def _failures(measured: list[LoadResult], baseline: list[LoadResult]) -> str:
    failed = sum(r.failed for r in measured) + sum(r.failed for r in baseline)
    return f"; **{failed} failed requests**" if failed else ""


def _cpu(results: list[LoadResult], server: str, items: int) -> str:
    """CPU shares of the client, the server and the stack, and the server's CPU time per
    item (the figure a noisy machine does not move much)."""
    runs = [{"client": r.client_cpu, **r.cpu} for r in results]
    per_item = _cpu_per_item(results, server, items)
    shares = cpu_summary(runs, ["client", server, "kafka", "postgres"])
    return f"{shares}; {server} {per_item.median:.0f} µs CPU/{'tx' if items > 1 else 'req'}"


def _cpu_per_item(results: list[LoadResult], server: str, items: int) -> Series:
    """The server's CPU microseconds per item (request or transaction), run by run."""
    return Series.of([r.cpu[server] / 100 / (r.rps * items) * 1e6 for r in results if r.rps])
