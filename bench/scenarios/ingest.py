"""Single POST and batch ingest, every server under the same uvicorn settings on the same
core, driven by wrk from the other core, in interleaved rounds (the order reversed every
other round, so a drift in the machine's load favours no one):

- single POSTs: the command API (durable 201s, acks=all) against the lean endpoint
  (`bench.baselines:lean_command_app`: as durable, built the leanest way this stack allows),
  with the bare ASGI floor beside them; then each of the two at half its measured peak rate,
  open loop, for the latency a producer sees when the server is not saturated;
- batches of 1,000: the command API against the producer ceiling (a bare aiokafka producer
  appending pre-serialized events with `send_batch`, pinned to the same core), with the
  no-op endpoint (same JWT check and decoding, publishes nothing) beside it.

`--before PATH` adds the command API of another checkout (e.g. a `git worktree` of the
commit a change started from) to the same rounds: before and after in one run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.ceilings import Ceiling, measure
from bench.paced import PacedResult, paced
from bench.procs import Service, running
from bench.report import Row, Series, cpu_summary, paired_ratio
from bench.scenarios import CLIENT_CPUS, SERVER_CPUS, Context
from bench.wrk import LoadResult, Request, run_wrk
from tests.provenance import commit

BATCH_ITEMS = 1000
CEILING_EVENTS = 200_000
SINGLE_RATE_TARGET = 0.9  # of the lean endpoint's req/s
SINGLE_CPU_TARGET = 1.15  # of the lean endpoint's CPU per request
BATCH_TARGET = 0.25  # of the producer ceiling


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


@dataclass(slots=True)
class Contender:
    """A server in the rounds and what it measured."""

    service: Service
    results: list[LoadResult] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.service.name

    def rates(self, items: int = 1) -> Series:
        return Series.of([r.rps * items for r in self.results])

    def cpu_us(self, items: int = 1) -> Series:
        """The server's CPU microseconds per item (request or transaction), run by run."""
        return Series.of(
            [r.cpu[self.name] / 100 / (r.rps * items) * 1e6 for r in self.results if r.rps]
        )

    def cpu(self, items: int = 1) -> str:
        """CPU shares of the client, the server and the stack, and the server's CPU time per
        item (the figure a noisy machine does not move much)."""
        runs = [{"client": r.client_cpu, **r.cpu} for r in self.results]
        shares = cpu_summary(runs, ["client", self.name, "kafka", "postgres"])
        unit = "tx" if items > 1 else "req"
        return f"{shares}; {self.name} {self.cpu_us(items).median:.0f} µs CPU/{unit}"

    def summary(self, items: int = 1) -> dict[str, Any]:
        return {
            "per_second": self.rates(items).to_json(),
            "cpu_us": self.cpu_us(items).to_json(),
            "p50_ms": Series.of([r.p50_ms for r in self.results]).to_json(),
            "p99_ms": Series.of([r.p99_ms for r in self.results]).to_json(),
            "requests": [r.requests for r in self.results],
            "failed": [r.errors for r in self.results],
            "cpu": [{"client": r.client_cpu, **r.cpu} for r in self.results],
        }


def _rounds(
    ctx: Context,
    kind: str,
    *,
    contenders: list[Contender],
    request: Request,
    connections: int,
    ceiling_topic: Any = None,
) -> list[Ceiling]:
    ctx.progress(f"ingest ({kind}): warm-up")
    for contender in contenders:
        run_wrk(
            contender.service.url,
            request,
            seconds=ctx.warmup_seconds,
            connections=connections,
            client_cpus=CLIENT_CPUS,
        )
    ceilings: list[Ceiling] = []
    for index in range(ctx.runs):
        ctx.progress(f"ingest ({kind}): round {index + 1}/{ctx.runs}")
        for contender in contenders if index % 2 == 0 else reversed(contenders):
            service = contender.service
            result = run_wrk(
                service.url,
                request,
                seconds=ctx.seconds,
                connections=connections,
                client_cpus=CLIENT_CPUS,
                watch=[service.watched(), *ctx.watch_infra],
            )
            if result.failed:
                ctx.progress(f"{service.name}: failed requests {result.errors}")
            contender.results.append(result)
        if ceiling_topic is not None:
            ceilings.append(measure("produce", ceiling_topic, CEILING_EVENTS, cpus=SERVER_CPUS))
    return ceilings


async def run(ctx: Context, before: Path | None = None) -> None:
    token = ctx.infra.token()

    async def env() -> dict[str, str]:
        return ctx.infra.service_env(topic=(await ctx.infra.new_topic()).topic)

    topic = await ctx.infra.new_topic()
    real_env = ctx.infra.service_env(topic=topic.topic)

    def server(name: str, factory: str) -> Service:
        return Service.uvicorn(name, factory, env=real_env, cpus=SERVER_CPUS, log_dir=ctx.log_dir)

    real = Contender(
        Service.api("command_api", env=real_env, cpus=SERVER_CPUS, log_dir=ctx.log_dir)
    )
    lean = Contender(
        Service.uvicorn(
            "lean_command",
            "bench.baselines:lean_command_app",
            env=await env(),
            cpus=SERVER_CPUS,
            log_dir=ctx.log_dir,
        )
    )
    floor = Contender(server("bare_asgi", "bench.baselines:bare_asgi_app"))
    old: Contender | None = None
    if before is not None:
        old = Contender(
            Service.api(
                "command_api",
                name="command_api_before",
                env=await env(),
                cpus=SERVER_CPUS,
                log_dir=ctx.log_dir,
                cwd=before,
            )
        )
    single = Request("POST", "/transactions", _headers(token), single_body())
    contenders = [real, lean, floor, *([old] if old else [])]
    with running(*(c.service for c in contenders)):
        _rounds(ctx, "single", contenders=contenders, request=single, connections=ctx.connections)
        half: dict[str, PacedResult] = {}
        for contender in (real, lean, *([old] if old else [])):
            rate = contender.rates().median / 2
            ctx.progress(f"ingest (single): {contender.name} paced at {rate:,.0f} req/s")
            half[contender.name] = await paced(
                contender.service.url,
                single,
                rate=rate,
                seconds=ctx.seconds,
                watch=[contender.service.watched()],
            )
    _record_single(ctx, real=real, lean=lean, floor=floor, old=old, half=half, before=before)

    batch = Request("POST", "/transactions/batch", _headers(token), batch_body())
    real, old = Contender(real.service), Contender(old.service) if old else None
    noop = Contender(server("noop_command", "bench.baselines:noop_command_app"))
    contenders = [real, noop, *([old] if old else [])]
    with running(*(c.service for c in contenders)):
        ceilings = _rounds(
            ctx,
            "batch",
            contenders=contenders,
            request=batch,
            connections=ctx.batch_connections,
            ceiling_topic=topic,
        )
    _record_batch(ctx, real=real, noop=noop, old=old, ceilings=ceilings, before=before)


def _before(before: Path | None) -> str:
    return f"the command API at {commit(before) or before}" if before else ""


def _record_single(
    ctx: Context,
    *,
    real: Contender,
    lean: Contender,
    floor: Contender,
    old: Contender | None,
    half: dict[str, PacedResult],
    before: Path | None,
) -> None:
    rate, base = real.rates(), lean.rates()
    ratios = paired_ratio(rate.values, base.values)
    cpu_ratios = paired_ratio(real.cpu_us().values, lean.cpu_us().values)
    p99 = Series.of([r.p99_ms for r in real.results])
    ctx.report.data["ingest_single"] = {
        "connections": ctx.connections,
        "seconds": ctx.seconds,
        "measured": real.summary(),
        "baseline": lean.summary(),
        "floor": floor.summary(),
        "ratio": ratios.to_json(),
        "cpu_ratio": cpu_ratios.to_json(),
        "half_peak": {name: _paced_json(result) for name, result in half.items()},
        **({"before": old.summary(), "before_commit": _before(before)} if old else {}),
    }
    met = ratios.median >= SINGLE_RATE_TARGET and cpu_ratios.median <= SINGLE_CPU_TARGET
    ctx.report.add(
        Row(
            scenario=f"single POST ingest, {ctx.connections} conns",
            measured=f"{rate.describe(' req/s')}; p50 "
            f"{Series.of([r.p50_ms for r in real.results]).median:.1f} ms, "
            f"p99 {p99.median:.1f} ms{_failures(real, lean)}",
            baseline=f"lean endpoint: {base.describe(' req/s')}",
            ratio=f"{ratios.describe('x', 2)} req/s, {cpu_ratios.describe('x', 2)} CPU/req",
            target=">= 0.9x req/s, <= 1.15x CPU/req",
            met=met,
            cpu=f"{real.cpu()}; lean {lean.cpu()}",
            key="ingest_single",
            figures={
                "rate": rate.median,
                "ratio": ratios.median,
                "cpu_ratio": cpu_ratios.median,
                "cpu_us": real.cpu_us().median,
            },
        )
    )
    floor_ratios = paired_ratio(rate.values, floor.rates().values)
    ctx.report.add(
        Row(
            scenario="single POST ingest vs the floor of Python HTTP",
            measured=f"{rate.describe(' req/s')}",
            baseline=f"bare ASGI app, constant 201: {floor.rates().describe(' req/s')}",
            ratio=f"{floor_ratios.describe('x', 2)}",
            target="report",
            met=None,
            cpu=f"bare_asgi {floor.cpu_us().median:.0f} µs CPU/req",
            key="ingest_single_floor",
            figures={"ratio": floor_ratios.median},
        )
    )
    ours, theirs = half[real.name], half[lean.name]
    ctx.report.add(
        Row(
            scenario="single POST latency at half the peak rate (open loop)",
            measured=f"{ours.rate:,.0f} req/s: p50 {ours.percentile(50):.1f} ms, "
            f"p99 {ours.percentile(99):.1f} ms{_paced_trouble(ours)}",
            baseline=f"lean endpoint at {theirs.rate:,.0f} req/s: p50 "
            f"{theirs.percentile(50):.1f} ms, p99 {theirs.percentile(99):.1f} ms"
            f"{_paced_trouble(theirs)}",
            ratio="—",
            target="report",
            met=None,
            cpu=f"client {ours.cpu.get('client', 0):.0f}% / "
            f"command_api {ours.cpu.get(real.name, 0):.0f}%",
            key="ingest_single_latency",
            figures={"p99_ms": ours.percentile(99), "p50_ms": ours.percentile(50)},
        )
    )
    if old is not None:
        then = half[old.name]
        against = paired_ratio(rate.values, old.rates().values)
        cpu_against = paired_ratio(real.cpu_us().values, old.cpu_us().values)
        ctx.report.add(
            Row(
                scenario=f"single POST ingest, this commit vs {_before(before)}",
                measured=f"{rate.describe(' req/s')}, {real.cpu_us().median:.0f} µs CPU/req",
                baseline=f"{old.rates().describe(' req/s')}, "
                f"{old.cpu_us().median:.0f} µs CPU/req; at half its peak "
                f"({then.rate:,.0f} req/s) p99 {then.percentile(99):.1f} ms; "
                f"vs lean {paired_ratio(old.rates().values, base.values).describe('x', 2)}",
                ratio=f"{against.describe('x', 2)} req/s, {cpu_against.describe('x', 2)} CPU/req",
                target="report",
                met=None,
                cpu=old.cpu(),
                key="ingest_single_before",
            )
        )


def _record_batch(
    ctx: Context,
    *,
    real: Contender,
    noop: Contender,
    old: Contender | None,
    ceilings: list[Ceiling],
    before: Path | None,
) -> None:
    rate = real.rates(BATCH_ITEMS)
    ceiling = Series.of([c.rate for c in ceilings])
    ratios = paired_ratio(rate.values, ceiling.values)
    p50 = Series.of([r.p50_ms for r in real.results])
    p99 = Series.of([r.p99_ms for r in real.results])
    ceiling_cpu = Series.of([c.cpu_us for c in ceilings])
    ctx.report.data["ingest_batch"] = {
        "connections": ctx.batch_connections,
        "seconds": ctx.seconds,
        "items_per_request": BATCH_ITEMS,
        "measured": real.summary(BATCH_ITEMS),
        "baseline": noop.summary(BATCH_ITEMS),
        "ceiling": [asdict(c) for c in ceilings],
        "ratio_to_ceiling": ratios.to_json(),
        "ratio_to_noop": paired_ratio(rate.values, noop.rates(BATCH_ITEMS).values).to_json(),
        **({"before": old.summary(BATCH_ITEMS), "before_commit": _before(before)} if old else {}),
    }
    ctx.report.add(
        Row(
            scenario=f"batch ingest, {BATCH_ITEMS}-item batches, {ctx.batch_connections} conns",
            measured=f"{rate.describe(' tx/s')}; p50 {p50.median:.0f} ms, "
            f"p99 {p99.median:.0f} ms{_failures(real, noop)}",
            baseline=f"producer ceiling (bare `send_batch`, {CEILING_EVENTS:,} events): "
            f"{ceiling.describe(' events/s')}, {ceiling_cpu.median:.1f} µs CPU/event; "
            f"no-op endpoint: {noop.rates(BATCH_ITEMS).describe(' tx/s')}",
            ratio=f"{ratios.describe('x', 2)}",
            target=">= 0.25x",
            met=ratios.median >= BATCH_TARGET,
            cpu=f"{real.cpu(BATCH_ITEMS)}; baseline {noop.cpu(BATCH_ITEMS)}",
            key="ingest_batch",
            figures={
                "rate": rate.median,
                "ratio": ratios.median,
                "cpu_us": real.cpu_us(BATCH_ITEMS).median,
            },
        )
    )
    if old is not None:
        against = paired_ratio(rate.values, old.rates(BATCH_ITEMS).values)
        then = paired_ratio(old.rates(BATCH_ITEMS).values, ceiling.values)
        ctx.report.add(
            Row(
                scenario=f"batch ingest, this commit vs {_before(before)}",
                measured=f"{rate.describe(' tx/s')}, "
                f"{real.cpu_us(BATCH_ITEMS).median:.1f} µs CPU/tx",
                baseline=f"{old.rates(BATCH_ITEMS).describe(' tx/s')}, "
                f"{old.cpu_us(BATCH_ITEMS).median:.1f} µs CPU/tx; "
                f"vs the ceiling {then.describe('x', 2)}",
                ratio=f"{against.describe('x', 2)}",
                target="report",
                met=None,
                cpu=old.cpu(BATCH_ITEMS),
                key="ingest_batch_before",
            )
        )


def _failures(*contenders: Contender) -> str:
    failed = sum(r.failed for c in contenders for r in c.results)
    return f"; **{failed} failed requests**" if failed else ""


def _paced_trouble(result: PacedResult) -> str:
    failed = sum(result.errors.values())
    notes = [f"**{failed} failed**" if failed else "", f"{result.late:,} sent late"]
    return "".join(f"; {note}" for note in notes if note and not note.startswith("0 "))


def _paced_json(result: PacedResult) -> dict[str, Any]:
    return {
        "rate": result.rate,
        "seconds": result.seconds,
        "ok": result.ok,
        "late": result.late,
        "errors": dict(result.errors),
        "p50_ms": result.percentile(50),
        "p90_ms": result.percentile(90),
        "p99_ms": result.percentile(99),
        "max_ms": max(result.latency_ms, default=float("nan")),
        "cpu": result.cpu,
    }
