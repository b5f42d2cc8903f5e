"""Rebuilding the projection from the log: verified, atomic, resumable, never a gap in reads."""

from __future__ import annotations

import asyncio
import random
import signal
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from projector.adapters.postgres_catalog import REBUILD_LOCK
from shared.events import TransactionRecorded
from shared.settings import KafkaSettings
from tests.integration.conftest import TopicFactory
from tests.integration.support import (
    ProjectorProcess,
    event,
    ground_truth,
    projection_stats,
    publish,
    query_client,
    wait_until,
)


def random_events(count: int, seed: int) -> list[TransactionRecorded]:
    rng = random.Random(seed)
    return [event(Decimal(rng.randint(1, 10**7)) / 100) for _ in range(count)]


async def consumed(pool: asyncpg.Pool, total: int) -> bool:
    _, offsets = await projection_stats(pool)
    return offsets >= total


def process(kafka: KafkaSettings, url: str, tmp: Path, name: str, **env: str) -> ProjectorProcess:
    return ProjectorProcess(
        kafka=kafka, database_url=url, group_id="live", log_path=tmp / f"{name}.log", **env
    )


async def fold_with_live_projector(
    kafka: KafkaSettings,
    url: str,
    pool: asyncpg.Pool,
    tmp: Path,
    events: list[TransactionRecorded],
) -> None:
    """Publish `events` and let a live projector fold them all, then stop it."""
    await publish(kafka, events)
    live = process(kafka, url, tmp, "live").start()
    try:
        await wait_until(lambda: consumed(pool, len(events)), timeout=120)
    finally:
        live.stop()


async def run_to_end(proc: ProjectorProcess, *args: str, timeout: float = 300) -> int:
    proc.start(*args)
    return await asyncio.to_thread(proc.wait, timeout)


async def test_rebuild_under_reads_and_writes_swaps_without_a_gap(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    events = random_events(20_000, seed=1)
    await publish(kafka, events)
    live = process(kafka, database_url, tmp_path, "live").start()
    try:
        await wait_until(lambda: consumed(pg_pool, len(events)), timeout=120)
        before, _ = await projection_stats(pg_pool)
        assert before == ground_truth(events)

        reads: list[tuple[int, int]] = []  # (status, count) of every GET /stats
        done = asyncio.Event()

        async def reader(query: httpx.AsyncClient) -> None:
            while not done.is_set():
                response = await query.get("/stats")
                reads.append((response.status_code, response.json().get("count", -1)))
                await asyncio.sleep(0.02)

        late: list[TransactionRecorded] = []
        rebuild_ended = asyncio.Event()
        overlapped = 0  # chunks acknowledged after the rebuild began and before it swapped

        async def version(sql: str) -> int | None:
            value: int | None = await pg_pool.fetchval(sql)
            return value

        async def writer() -> None:
            """Publish 100 events at a time until the swap, and one chunk after it."""
            nonlocal overlapped
            seed = 2
            while True:
                building = await version("SELECT max(version) FROM projection_versions")
                chunk = random_events(100, seed=seed)
                seed += 1
                await publish(kafka, chunk)  # returns once every event is acknowledged
                late.extend(chunk)
                active = await version("SELECT version FROM projection_active")
                if active != 1 or rebuild_ended.is_set():
                    return
                if building == 2:  # begun before this chunk, not swapped after its acks
                    overlapped += 1
                await asyncio.sleep(0.05)

        async with query_client(database_url) as query:
            reading = asyncio.create_task(reader(query))
            writing = asyncio.create_task(writer())
            rebuild = process(kafka, database_url, tmp_path, "rebuild", PROJECTOR_MAX_BATCH="500")
            code = await run_to_end(rebuild, "rebuild")
            rebuild_ended.set()
            await writing
            done.set()
            await reading
        assert code == 0, (tmp_path / "rebuild.log").read_text()
        assert overlapped > 0, "no write was acknowledged while the rebuild ran"

        everything = events + late
        await wait_until(lambda: consumed(pg_pool, len(everything)), timeout=120)
        after, _ = await projection_stats(pg_pool)
        assert after == ground_truth(everything)
        assert await pg_pool.fetchval("SELECT version FROM projection_active") == 2
        assert await pg_pool.fetchval("SELECT count(*) FROM projection_versions") == 1
        assert len(reads) > 10
        assert {status for status, _ in reads} == {200}
        counts = [count for _, count in reads]
        assert min(counts) >= before.count, "a read saw an empty or partial projection"
        assert counts == sorted(counts), "a read went backwards"
    finally:
        live.stop()


async def test_dry_run_detects_a_corrupted_live_projection(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    await fold_with_live_projector(kafka, database_url, pg_pool, tmp_path, random_events(2_000, 3))
    await pg_pool.execute(
        "UPDATE partition_totals SET tx_sum = tx_sum + 0.01 WHERE version = 1 AND partition = 0"
    )
    code = await run_to_end(process(kafka, database_url, tmp_path, "dry"), "rebuild", "--dry-run")
    assert code == 1
    assert await pg_pool.fetchval("SELECT version FROM projection_active") == 1


@pytest.mark.slow
async def test_a_killed_rebuild_resumes_and_ends_exact(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    events = random_events(30_000, seed=4)
    await fold_with_live_projector(kafka, database_url, pg_pool, tmp_path, events)

    async with pg_pool.acquire() as holder:  # as if another rebuild were running
        await holder.execute("SELECT pg_advisory_lock($1)", REBUILD_LOCK)
        second = process(kafka, database_url, tmp_path, "second")
        assert await run_to_end(second, "rebuild", timeout=60) == 3
        await holder.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK)

    slow = {"PROJECTOR_MAX_BATCH": "300"}
    first = process(kafka, database_url, tmp_path, "first", **slow).start("rebuild")

    async def rebuilt(share: float) -> bool:
        folded = await pg_pool.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM partition_totals WHERE version = 2"
        )
        return bool(folded >= len(events) * share)

    await wait_until(lambda: rebuilt(0.3), timeout=120)
    first.kill(signal.SIGKILL)
    assert await pg_pool.fetchval("SELECT version FROM projection_active") == 1
    assert await pg_pool.fetchval("SELECT state FROM projection_versions WHERE version = 2") == (
        "building"
    )

    resumed = process(kafka, database_url, tmp_path, "resumed", LOG_LEVEL="INFO")
    assert await run_to_end(resumed, "rebuild") == 0
    assert "resuming projection version 2" in (tmp_path / "resumed.log").read_text()
    stats, _ = await projection_stats(pg_pool)
    assert await pg_pool.fetchval("SELECT version FROM projection_active") == 2
    assert stats == ground_truth(events)
