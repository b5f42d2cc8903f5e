"""Migrations 004 (buckets per partition) and 005 (a producer's ids are its own) move a
projection folded before them: the rows are seeded as the projector wrote them then, the
migrations run, and the projection is what the projector folds from the same log now, so a
rebuild verifies equal and swaps. Rows from before migration 003 (no payload, no producer)
keep claiming their id for every producer: nothing is counted twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from projector.adapters.postgres_catalog import PostgresVersionCatalog
from projector.adapters.postgres_store import PostgresProjectionStore
from projector.batch import Batch
from projector.commit import commit
from projector.main import EXIT_SCHEMA_NOT_READY
from projector.records import decode
from query_api.adapters.postgres_reader import PostgresProjectionReader
from query_api.ports import BucketRange
from shared.database import SchemaNotReadyError, check_schema, migrate
from shared.events import TransactionRecorded, serialize
from shared.settings import KafkaSettings
from shared.totals import Totals
from tests.integration.conftest import TopicFactory
from tests.integration.support import ProjectorProcess, publish
from tests.scratch_database import ROLES

OCCURRED = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)
RECORDED = datetime(2026, 11, 26, 12, 0, 31, 250_000, tzinfo=UTC)
SECOND = int(OCCURRED.timestamp())
ALL_SECONDS = BucketRange(0, 10**12, 1, 0)
ALL_MINUTES = BucketRange(1, 0, 0, 10**10)


def tx(transaction_id: str, producer: str, amount: str) -> TransactionRecorded:
    return TransactionRecorded(
        uuid.uuid4(), transaction_id, Decimal(amount), OCCURRED, RECORDED, producer
    )


# The log, one partition: offset = index. "old-1" was folded before migration 003.
LOG = [
    tx("old-1", "shop-a", "7.00"),
    tx("x", "shop-a", "10.00"),
    tx("x", "shop-b", "99.99"),  # then: a conflict of shop-a's x; now: shop-b's own x
    tx("x", "shop-b", "99.99"),  # then: a conflict; now: a retry of shop-b's x
    tx("x", "shop-b", "50.00"),  # then: a conflict; now: a conflict of shop-b's x
    tx("x", "shop-a", "11.00"),  # then and now: a conflict of shop-a's x
    tx("y", "shop-c", "5.00"),
]


async def migrated_up_to(conn: asyncpg.Connection[Any], last: int) -> None:
    """Apply the migrations up to `last` as `shared.database.migrate` records them."""
    await conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    folder = resources.files("shared") / "migrations"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        number = int(entry.name.split("_", 1)[0]) if entry.name.endswith(".sql") else 0
        if 0 < number <= last:
            async with conn.transaction():
                await conn.execute(entry.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    number,
                    entry.name,
                )


async def fold_as_before(conn: asyncpg.Connection[Any]) -> None:
    """What the projector of migration 003 wrote for `LOG`: one id one transaction, whoever
    posted it; "old-1" stored without its payload (folded before 003)."""
    first = LOG[1]
    await conn.execute(
        "INSERT INTO partition_totals (version, partition, next_offset, log_end_offset,"
        " tx_count, tx_sum, tx_max, tx_min) VALUES (1, 0, 7, 7, 3, 22.00, 10.00, 5.00)"
    )
    for table, bucket in (("second_buckets", SECOND), ("minute_buckets", SECOND // 60)):
        await conn.execute(
            f"INSERT INTO {table} (version, bucket, tx_count, tx_sum, tx_max, tx_min)"  # noqa: S608
            " VALUES (1, $1, 3, 22.00, 10.00, 5.00)",
            bucket,
        )
    await conn.execute(
        "INSERT INTO seen_transactions (version, transaction_id) VALUES (1, 'old-1')"
    )
    seen = (
        'INSERT INTO seen_transactions (version, transaction_id, partition, "offset", amount,'
        " occurred_at, recorded_at, producer, duplicates, conflicts)"
        " VALUES (1, $1, 0, $2, $3, $4, $5, $6, $7, $8)"
    )
    await conn.execute(seen, "x", 1, first.amount, OCCURRED, RECORDED, "shop-a", 4, 4)
    await conn.execute(seen, "y", 6, Decimal("5.00"), OCCURRED, RECORDED, "shop-c", 0, 0)
    for offset in range(2, 6):
        repeat = LOG[offset]
        await conn.execute(
            'INSERT INTO transaction_conflicts (version, transaction_id, partition, "offset",'
            " amount, occurred_at, recorded_at, producer, first_partition, first_offset,"
            " first_amount, first_occurred_at, first_producer)"
            " VALUES (1, 'x', 0, $1, $2, $3, $4, $5, 0, 1, $6, $7, 'shop-a')",
            offset,
            repeat.amount,
            OCCURRED,
            RECORDED,
            repeat.producer,
            first.amount,
            OCCURRED,
        )


SEEN = """
SELECT producer, transaction_id, partition, "offset", amount, occurred_at, recorded_at,
       duplicates, conflicts
FROM seen_transactions WHERE version = $1 AND transaction_id IN ('x', 'y')
ORDER BY producer, transaction_id"""
CONFLICTS = """
SELECT producer, transaction_id, partition, "offset", amount, first_partition, first_offset,
       first_amount, first_producer
FROM transaction_conflicts WHERE version = $1 ORDER BY producer, "offset" """


async def old_projection(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await migrated_up_to(conn, 3)
        await fold_as_before(conn)
        assert await migrate(conn, ROLES) == ["004_partition_buckets.sql", "005_producer_keys.sql"]
    finally:
        await conn.close()


async def test_a_projection_folded_before_is_what_the_projector_folds_now(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await old_projection(database_url)

    reader = PostgresProjectionReader(pg_pool)
    expected = Totals(4, Decimal("121.99"), Decimal("99.99"), Decimal("5.00"))
    assert (await reader.all_time()).totals == expected
    for buckets in (ALL_SECONDS, ALL_MINUTES):  # the -1 rows and shop-b's
        assert (await reader.window(buckets)).totals == expected
    theirs = (await reader.transaction("shop-b", "x")).record
    mine = (await reader.transaction("shop-a", "x")).record
    assert theirs is not None
    assert mine is not None
    assert (theirs.counted.amount, theirs.duplicates, theirs.conflict_count) == (  # type: ignore[union-attr]
        Decimal("99.99"),
        2,
        1,
    )
    assert [o.amount for o in theirs.conflicts] == [Decimal("50.00")]
    assert (mine.duplicates, mine.conflict_count) == (1, 1)
    assert [(o.producer, o.amount) for o in mine.conflicts] == [("shop-a", Decimal("11.00"))]

    kafka = await kafka_settings(partitions=1)
    await publish(kafka, LOG)
    rebuild = ProjectorProcess(
        kafka=kafka, database_url=database_url, group_id="live", log_path=tmp_path / "rb.log"
    ).start("rebuild", "--keep-old")
    assert rebuild.wait(120) == 0, (tmp_path / "rb.log").read_text()  # verified equal, swapped
    new = await pg_pool.fetchval("SELECT version FROM projection_active")
    assert new == 2
    assert await pg_pool.fetch(SEEN, 2) == await pg_pool.fetch(SEEN, 1)
    assert await pg_pool.fetch(CONFLICTS, 2) == await pg_pool.fetch(CONFLICTS, 1)
    for buckets in (ALL_SECONDS, ALL_MINUTES):
        assert (await reader.window(buckets)).totals == expected


async def test_an_id_folded_before_producers_were_kept_is_claimed_for_every_producer(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    await old_projection(database_url)
    assert await pg_pool.fetchval("SELECT legacy_ids FROM projection_versions WHERE version = 1")
    store = PostgresProjectionStore(pg_pool)
    again = [tx("old-1", "shop-d", "7.00"), tx("old-1", "shop-a", "8.00"), tx("z", "shop-d", "1")]
    batch = Batch([decode(0, 7 + i, serialize(e)) for i, e in enumerate(again)])

    result = await commit(store, batch, version=1, live=True)

    assert ([e.transaction_id for e in result.folded], result.duplicates) == (["z"], 2)
    assert result.conflicts == ()  # no payload to compare with
    assert (await store.totals(1)).count == 5
    assert (
        await pg_pool.fetchval(
            "SELECT duplicates FROM seen_transactions WHERE version = 1 AND producer = ''"
        )
        == 2
    )
    reader = PostgresProjectionReader(pg_pool)
    legacy = (await reader.transaction("shop-d", "old-1")).record
    assert legacy is not None
    assert (legacy.counted, legacy.duplicates) == (None, 2)


async def test_a_process_refuses_a_database_a_newer_release_migrated(
    database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await pg_pool.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (999, '999_from_the_future.sql')"
    )
    async with pg_pool.acquire() as conn:
        with pytest.raises(SchemaNotReadyError, match=r"999_from_the_future\.sql"):
            await check_schema(conn)
    log = tmp_path / "status.log"
    status = ProjectorProcess(
        kafka=KafkaSettings(), database_url=database_url, group_id="none", log_path=log
    ).start("status")
    assert status.wait(60) == EXIT_SCHEMA_NOT_READY, log.read_text()
    assert "999_from_the_future.sql" in log.read_text()


async def test_a_legacy_projection_that_dropped_a_transaction_is_replaced_when_accepted(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await old_projection(database_url)
    [legacy] = [v for v in await PostgresVersionCatalog(pg_pool).describe() if v.version == 1]
    assert legacy.legacy_ids  # `status` shows it
    theirs = tx("old-1", "shop-d", "3.00")  # shop-d's own transaction, dropped by the claim
    store = PostgresProjectionStore(pg_pool)
    await commit(store, Batch([decode(0, 7, serialize(theirs))]), version=1, live=True)
    assert (await store.totals(1)).count == 4
    kafka = await kafka_settings(partitions=1)
    await publish(kafka, [*LOG, theirs])

    def rebuild(*args: str) -> int:
        log = tmp_path / "rb.log"
        process = ProjectorProcess(
            kafka=kafka, database_url=database_url, group_id="live", log_path=log
        ).start("rebuild", *args)
        return process.wait(120)

    assert rebuild() == 1, (tmp_path / "rb.log").read_text()  # the difference, nothing swapped
    assert await pg_pool.fetchval("SELECT version FROM projection_active") == 1
    assert rebuild("--accept-difference") == 0, (tmp_path / "rb.log").read_text()
    assert await pg_pool.fetchval("SELECT version FROM projection_active") == 2
    assert await store.totals(2) == Totals(5, Decimal("124.99"), Decimal("99.99"), Decimal("3.00"))
    [rebuilt] = [v for v in await PostgresVersionCatalog(pg_pool).describe() if v.version == 2]
    assert not rebuilt.legacy_ids
