"""`python -m bench` (`make bench`): run every scenario against its baseline, print one
Markdown table on stdout, write the run to `.local/bench/bench-<time>.{json,md}` (and
`latest.{json,md}`); `make figures` publishes the latest full run as docs/figures/bench.md.

Progress goes to stderr. Options shrink or focus a run (e.g. `--quick` while developing);
only a run with the defaults is published.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from bench.infra import bench_infra
from bench.procs import ROOT, BenchError
from bench.report import Report, Row
from bench.scenarios import CLIENT_CPUS, LAYOUT, SCENARIOS, Context
from bench.scenarios import client_import as import_scenario
from bench.scenarios import fold as fold_scenario
from bench.scenarios import freshness as freshness_scenario
from bench.scenarios import ingest as ingest_scenario
from bench.scenarios import stats as stats_scenario
from bench.scenarios import stream as stream_scenario
from bench.scenarios import window as window_scenario
from bench.wrk import ensure_wrk

T = TypeVar("T")
logger = logging.getLogger("bench")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (>= 3 to report)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per HTTP run")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the big log")
    parser.add_argument("--naive-events", type=int, default=20_000, help="naive fold prefix")
    parser.add_argument("--fresh-seconds", type=float, default=15.0, help="per freshness run")
    parser.add_argument("--connections", type=int, default=64, help="for single POST and GET")
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="short runs for development")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of another commit (e.g. a git worktree): its command API joins the "
        "ingest rounds, its projectors the fold's (two in one group, their lock waits), for "
        "before and after in one run",
    )
    return parser


async def _main(args: argparse.Namespace) -> Report:
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise BenchError(f"unknown scenarios: {', '.join(sorted(unknown))}")
    ensure_wrk()
    report = Report()
    async with bench_infra() as infra:
        ctx = Context(
            infra=infra,
            report=report,
            log_dir=ROOT / ".local" / "bench" / "logs",
            runs=args.runs,
            seconds=args.seconds,
            connections=args.connections,
            batch_connections=args.batch_connections,
            events=args.events,
            naive_events=args.naive_events,
            fresh_seconds=args.fresh_seconds,
        )
        if args.quick:
            ctx.runs, ctx.seconds, ctx.warmup_seconds = min(ctx.runs, 3), 3.0, 1.0
            ctx.events, ctx.naive_events, ctx.fresh_seconds = 100_000, 2_000, 5.0
        report.data["settings"] = {
            "runs": ctx.runs,
            "seconds": ctx.seconds,
            "connections": ctx.connections,
            "batch_connections": ctx.batch_connections,
            "events": ctx.events,
            "naive_events": ctx.naive_events,
            "layout": LAYOUT,
            "scenarios": chosen,
            "quick": args.quick,
            "before": str(args.before) if args.before else None,
        }
        if "ingest" in chosen:
            await _attempt(ctx, "ingest", ingest_scenario.run(ctx, args.before))
        if "import" in chosen:
            await _attempt(ctx, "import", import_scenario.run(ctx))
        large_url: str | None = None
        if "fold" in chosen or "stats" in chosen:
            large_url = await _attempt(
                ctx, "fold", _fold(ctx, fold="fold" in chosen, before=args.before)
            )
        if "stats" in chosen and large_url is not None:
            await _attempt(ctx, "stats", stats_scenario.run(ctx, large_url))
        if "window" in chosen:
            await _attempt(ctx, "window", window_scenario.run(ctx))
        if "freshness" in chosen:
            await _attempt(ctx, "freshness", freshness_scenario.run(ctx))
        if "stream" in chosen:
            await _attempt(ctx, "stream", stream_scenario.run(ctx))
        ctx.progress("cleaning up (databases, topics)")
    return report


async def _attempt(ctx: Context, name: str, scenario: Awaitable[T]) -> T | None:
    """Run one scenario; a failure is reported in the table and the others still run."""
    try:
        return await scenario
    except BenchError as err:
        logger.error("%s failed: %s", name, err)
        ctx.report.add(Row(name, f"**failed**: {err}", "—", "—", "—", False, "—", key=name))
        return None


async def _fold(ctx: Context, *, fold: bool, before: Path | None) -> str:
    """Load the big log; fold it (measured, or once for the read benchmark): a database URL."""
    log = await fold_scenario.load_log(ctx, ctx.events)
    if fold:
        return await fold_scenario.run(ctx, log, before)
    url = await ctx.infra.new_database()
    projector = fold_scenario.projector_service(ctx, log, url)
    await fold_scenario.fold_until(ctx, [projector], url, ctx.events, budget=900)
    return url


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    # The orchestrator is the client side: keep it (and the loader) off the server's core.
    if CLIENT_CPUS is not None:
        os.sched_setaffinity(0, {int(CLIENT_CPUS)})
    try:
        report = asyncio.run(_main(args))
    except BenchError as err:
        logger.error("%s", err)
        return 1
    path = report.write()
    sys.stdout.write("\n" + path.with_suffix(".md").read_text())
    sys.stdout.write(f"\nDetails: {path.relative_to(ROOT)}; publish: make figures\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
