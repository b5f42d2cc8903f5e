"""The projector against the real broker and database: exact, deduplicated, crash-proof."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from shared.events import deserialize, serialize
from tests.integration.conftest import TopicFactory
from tests.integration.support import (
    ProjectorProcess,
    event,
    ground_truth,
    group_members,
    projection_stats,
    publish,
    publish_raw,
    running_projector,
    wait_until,
)


async def consumed(pool: asyncpg.Pool, total: int) -> bool:
    _, offsets = await projection_stats(pool)
    return offsets >= total


async def test_events_fold_to_exact_stats_with_duplicates_and_poison(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    events = [event(f"{i}.{i % 100:02d}") for i in range(1, 201)]
    retried = [event("999.99", transaction_id=events[0].transaction_id) for _ in range(5)]
    await publish(kafka, events + retried)
    poison = [
        (b"p1", b"\xff\xfe garbage"),
        (b"p2", b'{"not": "an event"}'),
        (b"p3", serialize(event("1.00")).replace(b'"schema_version":1', b'"schema_version":9')),
        (b"p4", serialize(event("1.00")).replace(b'"amount":"1.00"', b'"amount":"-1.00"')),
    ]
    await publish_raw(kafka, poison)

    projector = ProjectorProcess(
        kafka=kafka,
        database_url=database_url,
        group_id=uuid.uuid4().hex,
        log_path=tmp_path / "projector.log",
    ).start()
    try:
        await wait_until(lambda: consumed(pg_pool, len(events) + 5 + 4), timeout=60)
    finally:
        projector.stop()

    stats, _ = await projection_stats(pg_pool)
    assert stats == ground_truth(events)
    assert await pg_pool.fetchval("SELECT count(*) FROM poison_events") == 4
    log = (tmp_path / "projector.log").read_text()
    assert log.count("skipped a poison event") == 4


async def test_a_record_only_postgresql_refuses_becomes_poison_and_the_fold_goes_on(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # A valid amount the column cannot hold: PostgreSQL refuses the value (SQLSTATE 22003),
    # which once made the projector retry that batch forever.
    await pg_pool.execute("ALTER TABLE seen_transactions ALTER COLUMN amount TYPE numeric(7, 2)")
    kafka = await kafka_settings(partitions=2)
    events = [event(f"{i}.00") for i in range(1, 301)]
    refused = event("131313.13")
    await publish(kafka, [*events[:150], refused, *events[150:]])

    async with running_projector(kafka, database_url, tmp_path / "projector.log") as projector:
        await wait_until(lambda: consumed(pg_pool, len(events) + 1), timeout=60)
        assert projector.alive()

    stats, _ = await projection_stats(pg_pool)
    assert stats == ground_truth(events)
    [row] = await pg_pool.fetch("SELECT reason, payload FROM poison_events")
    assert row["reason"].startswith("refused by the store: 22003")
    assert deserialize(row["payload"]) == refused
    log = (tmp_path / "projector.log").read_text()
    assert log.count("skipped a poison event") == 1


async def test_the_live_projector_rolls_sealed_buckets_up_into_one_row_each(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    events = [event("1.00", occurred_at=minutes_ago + timedelta(seconds=i % 7)) for i in range(300)]
    await publish(kafka, events)
    per_second = (
        "SELECT bucket, sum(tx_count)::bigint AS count, count(*) AS rows FROM second_buckets"
        " GROUP BY bucket ORDER BY bucket"
    )

    async with running_projector(kafka, database_url, tmp_path / "projector.log"):
        await wait_until(lambda: consumed(pg_pool, len(events)), timeout=60)
        folded = await pg_pool.fetch(per_second)
        assert max(row["rows"] for row in folded) > 1  # one row per partition at first

        async def rolled_up() -> bool:
            return all(row["rows"] == 1 for row in await pg_pool.fetch(per_second))

        await wait_until(rolled_up, timeout=60, interval=0.5)  # a round every 10 s

    assert [(r["bucket"], r["count"]) for r in await pg_pool.fetch(per_second)] == [
        (r["bucket"], r["count"]) for r in folded
    ]
    assert await pg_pool.fetchval("SELECT DISTINCT partition FROM second_buckets") == -1


@pytest.mark.slow
async def test_kill_9_at_random_points_loses_and_doubles_nothing(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    rng = random.Random(20261126)
    events = [event(Decimal(rng.randint(1, 10**7)) / 100) for _ in range(50_000)]
    events += [event("5.00", transaction_id=e.transaction_id) for e in rng.sample(events, 500)]
    rng.shuffle(events)
    await publish(kafka, events)
    truth = ground_truth(events)

    def spawn() -> ProjectorProcess:
        return ProjectorProcess(
            kafka=kafka,
            database_url=database_url,
            group_id="crashy",
            log_path=tmp_path / "projector.log",
            PROJECTOR_MAX_BATCH="500",
        ).start()

    kills = 0
    for fraction in sorted(rng.uniform(0.05, 0.9) for _ in range(5)):
        projector = spawn()
        target = int(len(events) * fraction)
        await wait_until(lambda: consumed(pg_pool, target), timeout=120)  # noqa: B023
        projector.kill()
        kills += 1
        partial, _ = await projection_stats(pg_pool)
        assert partial.count < truth.count, "killed too late: the fold had already finished"

    projector = spawn()
    try:
        await wait_until(lambda: consumed(pg_pool, len(events)), timeout=180)
    finally:
        projector.stop()
    stats, offsets = await projection_stats(pg_pool)
    assert kills == 5
    assert offsets == len(events)
    assert stats == truth


@pytest.mark.slow
async def test_two_projectors_share_partitions_and_survive_one_being_killed(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings(partitions=6)
    rng = random.Random(7)
    events = [event(Decimal(rng.randint(1, 10**6)) / 100) for _ in range(30_000)]

    def spawn(name: str) -> ProjectorProcess:
        return ProjectorProcess(
            kafka=kafka,
            database_url=database_url,
            group_id="pair",
            log_path=tmp_path / f"{name}.log",
            PROJECTOR_MAX_BATCH="300",
        ).start()

    async def members(predicate: Callable[[list[set[int]]], bool]) -> bool:
        return predicate(await group_members(kafka, "pair"))

    def split_between_two(held: list[set[int]]) -> bool:
        return len(held) == 2 and all(held) and set.union(*held) == set(range(6))

    first, second = spawn("first"), spawn("second")
    try:
        # Both hold partitions (so the one killed below owns some) before the log fills, and
        # the fold is under way while it does: the kill lands mid-fold, however fast it runs.
        await wait_until(lambda: members(split_between_two), timeout=60, interval=0.2)
        publishing = asyncio.create_task(publish(kafka, events))
        await wait_until(lambda: consumed(pg_pool, len(events) // 3), timeout=120)
        held = await group_members(kafka, "pair")
        assert split_between_two(held), held
        partial, _ = await projection_stats(pg_pool)
        first.kill()
        await publishing
        # The group notices the death and gives all six partitions to the survivor.
        await wait_until(lambda: members(lambda h: h == [set(range(6))]), timeout=60)
        await wait_until(lambda: consumed(pg_pool, len(events)), timeout=180)
    finally:
        first.stop()
        second.stop()
    assert partial.count < len(events), "killed too late: the fold had already finished"
    stats, _ = await projection_stats(pg_pool)
    assert stats == ground_truth(events)
