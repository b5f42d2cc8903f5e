"""`GET /stats?window=3600` when buckets are kept per partition (so that projectors never write
the same row), at 6 and at 24 partitions: as the projector's commits write them, and after its
roll-up merged the buckets older than `SEALED_AFTER_SECONDS` into one row per bucket; against
buckets kept once for all partitions, as they were before migration 004 (the same statement
over one row per bucket). Every second and minute bucket holds data in every partition: the
most rows a read can touch. Same query API, same core, runs interleaved; rows read come from
the database's own plan (`EXPLAIN ANALYZE` of the statement the reader runs)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import asyncpg

from bench.procs import Service, running
from bench.report import Row, Series, cpu_summary, paired_ratio
from bench.scenarios import CLIENT_CPUS, Context
from bench.scenarios.stats import measured_load, query_api_service
from bench.wrk import LoadResult, Request, run_wrk
from projector.adapters.postgres_store import PostgresProjectionStore
from projector.rollup import SEALED_AFTER_SECONDS
from query_api.adapters.postgres_reader import WINDOW_SQL, window_arguments
from query_api.windows import plan_window
from shared.projection import ALL_PARTITIONS, LONGEST_WINDOW_SECONDS
from tests.query_plans import explain

WINDOW = 3600
GET_WINDOW = Request("GET", f"/stats?window={WINDOW}", {"Accept": "application/json"})
PARTITION_COUNTS = (6, 24)
KINDS = ("global", "per partition", "rolled up")
# Seeded from two hours before the run to ten minutes after its start, so that every window
# read while it runs is full.
SPAN_SECONDS = 2 * 3600 + 600


async def seed(url: str, partitions: int, kind: str) -> None:
    now = int(time.time())
    holders = [ALL_PARTITIONS] if kind == "global" else list(range(partitions))
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO second_buckets (version, bucket, partition, tx_count, tx_sum, tx_max,"
            " tx_min) SELECT 1, s, p, 3, 30.00, 15.00, 5.00"
            " FROM generate_series($1::bigint, $2::bigint) AS s, unnest($3::int[]) AS p",
            now - 2 * 3600,
            now - 2 * 3600 + SPAN_SECONDS,
            holders,
        )
        await conn.execute(
            "INSERT INTO minute_buckets (version, bucket, partition, tx_count, tx_sum, tx_max,"
            " tx_min) SELECT 1, floor(bucket / 60.0), partition, sum(tx_count), sum(tx_sum),"
            " max(tx_max), min(tx_min) FROM second_buckets"
            " GROUP BY floor(bucket / 60.0), partition"
        )
        await conn.execute(
            "INSERT INTO partition_totals (version, partition, next_offset, log_end_offset,"
            " tx_count, tx_sum, tx_max, tx_min) SELECT 1, p, 1000, 1000, 1000, 10000.00,"
            " 15.00, 5.00 FROM generate_series(0, $1::int - 1) AS p",
            partitions,
        )
        if kind == "rolled up":
            await roll_up(url)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


STATEMENTS = 500


async def roll_up(url: str) -> None:
    """What the projector's roll-up does every few seconds."""
    before = int(time.time()) - SEALED_AFTER_SECONDS
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        store = PostgresProjectionStore(pool)
        await store.roll_up(1, start=before - LONGEST_WINDOW_SECONDS, before=before)
    finally:
        await pool.close()


async def read_cost(url: str) -> tuple[int, float]:
    """The bucket rows the window statement touches, and its median time in milliseconds
    over `STATEMENTS` runs one after the other (the database's share of a read, without the
    HTTP server's)."""
    conn = await asyncpg.connect(url)
    try:
        plan = plan_window(now=time.time(), seconds=WINDOW, allowance=5)
        touched = await explain(conn, WINDOW_SQL, *window_arguments(plan.buckets))
        statement = await conn.prepare(WINDOW_SQL)
        times = []
        for _ in range(STATEMENTS):
            arguments = window_arguments(
                plan_window(now=time.time(), seconds=WINDOW, allowance=5).buckets
            )
            started = time.perf_counter()
            await statement.fetchrow(*arguments)
            times.append(time.perf_counter() - started)
    finally:
        await conn.close()
    return touched["second_buckets"] + touched["minute_buckets"], statistics.median(times) * 1e3


Layout = tuple[int, str]
"""(partitions, how the buckets are kept: one of `KINDS`)."""

LAYOUTS: tuple[Layout, ...] = tuple(
    (partitions, kind) for partitions in PARTITION_COUNTS for kind in KINDS
)


def _name(layout: Layout) -> str:
    return f"query_api_{layout[0]}_{layout[1].replace(' ', '_')}"


async def run(ctx: Context) -> None:
    urls: list[str] = []
    services: list[Service] = []
    rows: dict[Layout, int] = {}
    for layout in LAYOUTS:
        ctx.progress(f"window: seeding {_name(layout)}")
        url = await ctx.infra.new_database()
        urls.append(url)
        await seed(url, *layout)
        services.append(query_api_service(ctx, _name(layout), url))
    results: dict[Layout, list[LoadResult]] = {layout: [] for layout in LAYOUTS}
    statement_ms: dict[Layout, list[float]] = {layout: [] for layout in LAYOUTS}
    try:
        for _ in range(ctx.runs):
            for layout, url in zip(LAYOUTS, urls, strict=True):
                if layout[1] == "rolled up":
                    await roll_up(url)
                rows[layout], milliseconds = await read_cost(url)
                statement_ms[layout].append(milliseconds)
        with running(*services):
            for service in services:
                run_wrk(
                    service.url,
                    GET_WINDOW,
                    seconds=ctx.warmup_seconds,
                    connections=ctx.connections,
                    client_cpus=CLIENT_CPUS,
                )
            for index in range(ctx.runs):
                ctx.progress(f"window: run {index + 1}/{ctx.runs}")
                order = list(zip(LAYOUTS, services, strict=True))
                for layout, service in order if index % 2 == 0 else reversed(order):
                    if layout[1] == "rolled up":
                        await roll_up(urls[LAYOUTS.index(layout)])
                    results[layout].append(measured_load(ctx, service, GET_WINDOW))
    finally:
        for url in urls:
            await ctx.infra.drop_database(url)
    _record(ctx, results, rows, {k: Series.of(v) for k, v in statement_ms.items()})


def _record(
    ctx: Context,
    results: dict[Layout, list[LoadResult]],
    rows: dict[Layout, int],
    statement: dict[Layout, Series],
) -> None:
    p50 = {layout: Series.of([r.p50_ms for r in runs]) for layout, runs in results.items()}
    rps = {layout: Series.of([r.rps for r in runs]) for layout, runs in results.items()}
    data: dict[str, Any] = {"window": WINDOW, "connections": ctx.connections}
    for layout, runs in results.items():
        data[_name(layout)] = {
            "bucket_rows_read": rows[layout],
            "statement_p50_ms": statement[layout].to_json(),
            "p50_ms": p50[layout].to_json(),
            "req_per_s": rps[layout].to_json(),
            "cpu": [{"client": r.client_cpu, **r.cpu} for r in runs],
        }
    for (partitions, kind), runs in results.items():
        if kind == "global":
            continue
        before = (partitions, "global")
        ratio = paired_ratio(p50[(partitions, kind)].values, p50[before].values)
        data[_name((partitions, kind))]["p50_ratio_to_global"] = ratio.to_json()
        after = (partitions, kind)
        alone = paired_ratio(statement[after].values, statement[before].values)
        cpu = [{"client": r.client_cpu, **r.cpu} for r in runs]
        ctx.report.add(
            Row(
                scenario=f"GET /stats?window={WINDOW}, buckets {kind}, {partitions} partitions, "
                f"{ctx.connections} conns",
                measured=f"p50 {p50[after].describe(' ms', 2)}, {rps[after].describe(' req/s')}, "
                f"{rows[after]:,} bucket rows read, statement alone "
                f"{statement[after].describe(' ms', 2)}",
                baseline=f"one row per bucket (before migration 004): p50 "
                f"{p50[before].describe(' ms', 2)}, {rps[before].describe(' req/s')}, "
                f"{rows[before]:,} bucket rows read, statement alone "
                f"{statement[before].describe(' ms', 2)}",
                ratio=f"p50 {ratio.describe('x', 2)}; statement {alone.describe('x', 2)}",
                target="report",
                met=None,
                cpu=cpu_summary(cpu, ["client", _name(after), "postgres"]),
                key=f"window_{partitions}_{kind.replace(' ', '_')}",
                figures={
                    "p50_ms": p50[after].median,
                    "ratio": ratio.median,
                    "rows": rows[after],
                    "statement_ratio": alone.median,
                },
            )
        )
    ctx.report.data["window"] = data
