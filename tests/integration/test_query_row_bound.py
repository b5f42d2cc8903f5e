"""O(1) reads, proven without timing: PostgreSQL's own row counts for the exact statements the
reader runs (`EXPLAIN (ANALYZE, FORMAT JSON)`), at 1,000 and at 1,000,000 events.

The data: one event per second in every one of 6 partitions, `events` of them ending now,
stored as the projector stores it (buckets are kept per partition: a second bucket per second
and partition, a minute bucket per minute and partition; one totals row per partition). The
bucket tables grow 1,000x between the two volumes; the rows a read touches must not: at most
the documented bound per partition.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg

from query_api.adapters.postgres_reader import ALL_TIME_SQL, WINDOW_SQL, window_arguments
from query_api.windows import max_bucket_rows, plan_window
from tests.query_plans import explain

NOW = 1_700_000_070.5
PARTITIONS = 6
ALLOWANCE = 5
BUCKET_TABLES = {"second_buckets", "minute_buckets"}
WINDOWS = (1, 59, 60, 61, 600, 1000, 1800, 3540, 3595, 3600)
DOCUMENTED_BOUND = 120  # "at most 120 bucket rows per partition whatever the volume"
VOLUMES = (1_000, 1_000_000)


def rows_by_definition(now: float, seconds: int, allowance: int) -> int:
    """The bucket rows a window reads by the definition in docs/api.md, when every bucket it names
    holds data: 1-second buckets from the window's first second to the end of that minute
    (none when it starts on a minute), then 1-minute buckets up to the minute holding
    now + allowance."""
    start = int(now) - seconds + 1
    second_rows = -start % 60
    first_whole_minute = (start + second_rows) // 60
    last_minute = (int(now) + allowance) // 60
    return second_rows + last_minute - first_whole_minute + 1


async def seed(conn: asyncpg.Connection[Any], events: int) -> None:
    now = int(NOW)
    await conn.execute("TRUNCATE partition_totals, second_buckets, minute_buckets")
    await conn.execute(
        "INSERT INTO second_buckets (version, bucket, partition, tx_count, tx_sum, tx_max,"
        " tx_min) SELECT 1, $1 - s, p, 1, 1.25, 1.25, 1.25"
        " FROM generate_series(0, $2::int / $3::int - 1) AS s,"
        " generate_series(0, $3::int - 1) AS p",
        now,
        events,
        PARTITIONS,
    )
    await conn.execute(
        "INSERT INTO minute_buckets (version, bucket, partition, tx_count, tx_sum, tx_max,"
        " tx_min) SELECT 1, floor(bucket / 60.0), partition, sum(tx_count), sum(tx_sum),"
        " max(tx_max), min(tx_min) FROM second_buckets GROUP BY floor(bucket / 60.0), partition"
    )
    await conn.execute(
        "INSERT INTO partition_totals (version, partition, next_offset, log_end_offset,"
        " tx_count, tx_sum, tx_max, tx_min)"
        " SELECT 1, p, $1 / $2, $1 / $2, $1 / $2, 1.25 * ($1 / $2), 1.25, 1.25"
        " FROM generate_series(0, $2 - 1) AS p",
        events,
        PARTITIONS,
    )
    await conn.execute("ANALYZE partition_totals, second_buckets, minute_buckets")
    stored = await conn.fetchval("SELECT count(*) FROM second_buckets")
    assert stored == events // PARTITIONS * PARTITIONS


async def measure(conn: asyncpg.Connection[Any]) -> dict[str, Counter[str]]:
    """Rows touched by the all-time read and by each window read, at `NOW`."""
    out = {"all": await explain(conn, ALL_TIME_SQL)}
    for seconds in WINDOWS:
        plan = plan_window(now=NOW, seconds=seconds, allowance=ALLOWANCE)
        arguments = window_arguments(plan.buckets)
        out[f"window={seconds}"] = await explain(conn, WINDOW_SQL, *arguments)
        out[f"in-range={seconds}"] = Counter(
            second_buckets=await conn.fetchval(
                "SELECT count(*) FROM second_buckets WHERE bucket BETWEEN $1 AND $2", *arguments[:2]
            ),
            minute_buckets=await conn.fetchval(
                "SELECT count(*) FROM minute_buckets WHERE bucket BETWEEN $1 AND $2", *arguments[2:]
            ),
        )
    return out


def bucket_rows(touched: Counter[str]) -> int:
    return sum(touched[table] for table in BUCKET_TABLES)


PLAN_CACHE_MODES = ("auto", "force_generic_plan")


async def test_rows_touched_do_not_grow_with_the_number_of_events(database_url: str) -> None:
    measured: dict[tuple[str, int], dict[str, Counter[str]]] = {}
    conn = await asyncpg.connect(database_url)
    try:
        for events in VOLUMES:
            await seed(conn, events)
            # asyncpg reuses prepared statements, which PostgreSQL may run with a generic
            # plan: check that plan too, not only the one planned for these parameter values.
            for mode in PLAN_CACHE_MODES:
                await conn.execute(f"SET plan_cache_mode = {mode}")
                measured[(mode, events)] = await measure(conn)
    finally:
        await conn.close()

    for mode in PLAN_CACHE_MODES:
        small, large = (measured[(mode, events)] for events in VOLUMES)
        # All time: one projection_active row, one row per partition, no bucket, at any volume.
        expected = Counter({"projection_active": 1, "partition_totals": PARTITIONS})
        assert small["all"] == expected
        assert large["all"] == expected

        for seconds in WINDOWS:
            key = f"window={seconds}"
            bound = max_bucket_rows(seconds=seconds, allowance=ALLOWANCE)
            assert bound <= DOCUMENTED_BOUND
            for volume in (small, large):
                assert bucket_rows(volume[key]) <= bound * PARTITIONS, (mode, key, volume[key])
                assert volume[key]["partition_totals"] == PARTITIONS
                assert volume[key]["projection_active"] == 1
            # At volume the primary keys are used: every bucket row read is one the window
            # needs. (A table of a few rows may be scanned whole; that is within the bound too.)
            assert bucket_rows(large[key]) == bucket_rows(large[f"in-range={seconds}"]), key
        # An hour ending at NOW has data in every bucket it names, in every partition: all of
        # them are read, no more.
        hour = rows_by_definition(NOW, 3600, ALLOWANCE)
        assert hour <= DOCUMENTED_BOUND
        assert bucket_rows(large["window=3600"]) == hour * PARTITIONS
