"""`GET /stats`: the query API over a projection of 1,000 events and over one of 1,000,000
(folded by the real projector from logs loaded straight into Kafka), against itself and
against a constant-JSON endpoint; same uvicorn settings, same core; runs interleaved."""

from __future__ import annotations

from typing import Any

from bench.procs import Service, running
from bench.report import Row, Series, cpu_summary, median_of, paired_ratio
from bench.scenarios import CLIENT_CPUS, SERVER_CPUS, Context
from bench.scenarios.fold import fold_until, load_log, projector_service
from bench.wrk import LoadResult, Request, run_wrk

SMALL = 1000
GET_STATS = Request("GET", "/stats", {"Accept": "application/json"})


async def small_projection(ctx: Context) -> str:
    topic = await load_log(ctx, SMALL)
    url = await ctx.infra.new_database()
    await fold_until(ctx, [projector_service(ctx, topic, url)], url, SMALL, budget=60)
    return url


def query_api_service(ctx: Context, name: str, database_url: str) -> Service:
    """A query API process over `database_url`, on the server cores (the window scenario's
    too)."""
    env = ctx.infra.service_env(database_url=database_url)
    return Service.uvicorn(
        name,
        "query_api.main:create_app",
        env=env,
        cpus=SERVER_CPUS,
        log_dir=ctx.log_dir,
        ready_path="/ready",
    )


def measured_load(ctx: Context, service: Service, request: Request) -> LoadResult:
    """One measured wrk run of `request` against `service`, the service and the infrastructure
    watched (the window scenario's too)."""
    result = run_wrk(
        service.url,
        request,
        seconds=ctx.seconds,
        connections=ctx.connections,
        client_cpus=CLIENT_CPUS,
        watch=[service.watched(), *ctx.watch_infra],
    )
    if result.failed:
        ctx.progress(f"{service.name}: failed requests {result.errors}; see {service.log_path}")
    return result


def _summary(results: list[LoadResult]) -> dict[str, Any]:
    return {
        "req_per_s": Series.of([r.rps for r in results]).to_json(),
        "p50_ms": Series.of([r.p50_ms for r in results]).to_json(),
        "p99_ms": Series.of([r.p99_ms for r in results]).to_json(),
        "cpu": [{"client": r.client_cpu, **r.cpu} for r in results],
        "failed": [r.errors for r in results],
    }


async def run(ctx: Context, large_url: str) -> None:
    small_url = await small_projection(ctx)
    small = query_api_service(ctx, "query_api_1k", small_url)
    large = query_api_service(ctx, "query_api_1m", large_url)
    noop = Service.uvicorn(
        "noop_stats",
        "bench.baselines:noop_stats_app",
        env=ctx.infra.service_env(),
        cpus=SERVER_CPUS,
        log_dir=ctx.log_dir,
    )
    results: dict[str, list[LoadResult]] = {"1k": [], "1m": [], "noop": []}
    with running(small, large, noop):
        ctx.progress("stats: warm-up")
        for service in (small, large, noop):
            run_wrk(
                service.url,
                GET_STATS,
                seconds=ctx.warmup_seconds,
                connections=ctx.connections,
                client_cpus=CLIENT_CPUS,
            )
        for index in range(ctx.runs):
            ctx.progress(f"stats: run {index + 1}/{ctx.runs}")
            order = [("1k", small), ("1m", large), ("noop", noop)]
            for key, service in order if index % 2 == 0 else reversed(order):
                results[key].append(measured_load(ctx, service, GET_STATS))
    _record(ctx, results)


def _record(ctx: Context, results: dict[str, list[LoadResult]]) -> None:
    p50 = {k: Series.of([r.p50_ms for r in v]) for k, v in results.items()}
    p99 = {k: Series.of([r.p99_ms for r in v]) for k, v in results.items()}
    rps = {k: Series.of([r.rps for r in v]) for k, v in results.items()}
    cpu = {k: [{"client": r.client_cpu, **r.cpu} for r in v] for k, v in results.items()}
    p50_ratios = paired_ratio(p50["1m"].values, p50["1k"].values)
    rps_ratios = paired_ratio(rps["1m"].values, rps["noop"].values)
    p50_ratio, rps_ratio = p50_ratios.median, rps_ratios.median
    ctx.report.data["stats"] = {
        "connections": ctx.connections,
        "projection_1k": _summary(results["1k"]),
        "projection_1m": _summary(results["1m"]),
        "noop": _summary(results["noop"]),
        "p50_ratio_1m_1k": p50_ratios.to_json(),
        "rps_ratio_1m_noop": rps_ratios.to_json(),
    }

    def describe(key: str) -> str:
        return (
            f"p50 {p50[key].describe(' ms', 2)}, p99 {p99[key].median:.2f} ms, "
            f"{rps[key].describe(' req/s')}"
        )

    ctx.report.add(
        Row(
            scenario=f"GET /stats latency, {ctx.events:,} vs {SMALL:,} events, "
            f"{ctx.connections} conns",
            measured=f"{ctx.events:,} events: {describe('1m')}",
            baseline=f"{SMALL:,} events: {describe('1k')}",
            ratio=f"p50 {p50_ratios.describe('x', 2)}",
            target="p50 ratio <= 1.1",
            met=p50_ratio <= 1.1,
            cpu=cpu_summary(cpu["1m"], ["client", "query_api_1m", "postgres"]),
            key="stats_latency",
            figures={"p50_ms": p50["1m"].median, "ratio": p50_ratio},
        )
    )
    ctx.report.add(
        Row(
            scenario="GET /stats throughput vs a constant-JSON endpoint",
            measured=f"{ctx.events:,} events: {rps['1m'].describe(' req/s')}",
            baseline=f"no-op: {rps['noop'].describe(' req/s')}, p50 {p50['noop'].median:.2f} ms",
            ratio=f"{rps_ratios.describe('x', 2)}",
            target=">= 0.8x",
            met=rps_ratio >= 0.8,
            cpu=f"{cpu_summary(cpu['1m'], ['client', 'query_api_1m', 'postgres'])}; "
            f"no-op {cpu_summary(cpu['noop'], ['client', 'noop_stats'])}",
            key="stats_throughput",
            figures={
                "rate": rps["1m"].median,
                "ratio": rps_ratio,
                "cpu_pct": median_of(cpu["1m"], "query_api_1m"),
            },
        )
    )
