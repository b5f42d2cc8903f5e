"""One contract for every `ProjectionReader`: the in-memory fake and PostgreSQL must agree.

Each test seeds rows the way they sit in the projection tables (the PostgreSQL case by plain
SQL, so it needs no projector) and reads them through the port.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import asyncpg
import pytest

from query_api.adapters.postgres_reader import PostgresProjectionReader
from query_api.errors import ProjectionUnavailableError
from query_api.ports import (
    MAX_LISTED_CONFLICTS,
    BucketRange,
    PartitionPosition,
    ProjectionReader,
    TransactionRecord,
)
from shared.projection import Occurrence
from shared.totals import Totals
from tests.doubles.memory_reader import InMemoryProjectionReader, PartitionRow


def totals(count: int, total: str, maximum: str | None, minimum: str | None) -> Totals:
    return Totals(
        count,
        Decimal(total),
        None if maximum is None else Decimal(maximum),
        None if minimum is None else Decimal(minimum),
    )


class Seeder(Protocol):
    reader: ProjectionReader

    async def partition(
        self, version: int, partition: int, next_offset: int, log_end: int, t: Totals
    ) -> None: ...

    async def second(self, version: int, bucket: int, t: Totals, partition: int = 0) -> None: ...

    async def minute(self, version: int, bucket: int, t: Totals, partition: int = 0) -> None: ...

    async def activate(self, version: int) -> None: ...

    async def transaction(self, version: int, record: TransactionRecord) -> None: ...


class MemorySeeder:
    def __init__(self) -> None:
        self.fake = InMemoryProjectionReader()
        self.reader: ProjectionReader = self.fake

    async def partition(
        self, version: int, partition: int, next_offset: int, log_end: int, t: Totals
    ) -> None:
        self.fake.put_partition(partition, PartitionRow(next_offset, log_end, t), version=version)

    async def second(self, version: int, bucket: int, t: Totals, partition: int = 0) -> None:
        self.fake.put_second(bucket, t, partition=partition, version=version)

    async def minute(self, version: int, bucket: int, t: Totals, partition: int = 0) -> None:
        self.fake.put_minute(bucket, t, partition=partition, version=version)

    async def activate(self, version: int) -> None:
        self.fake.active_version = version

    async def transaction(self, version: int, record: TransactionRecord) -> None:
        self.fake.put_transaction(record, version=version)


class PostgresSeeder:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.reader: ProjectionReader = PostgresProjectionReader(pool)

    async def _version(self, version: int) -> None:
        await self.pool.execute(
            "INSERT INTO projection_versions (version, state) VALUES ($1, 'building')"
            " ON CONFLICT DO NOTHING",
            version,
        )

    async def partition(
        self, version: int, partition: int, next_offset: int, log_end: int, t: Totals
    ) -> None:
        await self._version(version)
        await self.pool.execute(
            "INSERT INTO partition_totals (version, partition, next_offset, log_end_offset,"
            " tx_count, tx_sum, tx_max, tx_min) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            version,
            partition,
            next_offset,
            log_end,
            t.count,
            t.sum,
            t.max,
            t.min,
        )

    async def _bucket(
        self, table: str, version: int, bucket: int, t: Totals, partition: int
    ) -> None:
        await self._version(version)
        await self.pool.execute(
            f"INSERT INTO {table} (version, bucket, partition, tx_count, tx_sum, tx_max, tx_min)"  # noqa: S608
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            version,
            bucket,
            partition,
            t.count,
            t.sum,
            t.max,
            t.min,
        )

    async def second(self, version: int, bucket: int, t: Totals, partition: int = 0) -> None:
        await self._bucket("second_buckets", version, bucket, t, partition)

    async def minute(self, version: int, bucket: int, t: Totals, partition: int = 0) -> None:
        await self._bucket("minute_buckets", version, bucket, t, partition)

    async def activate(self, version: int) -> None:
        await self._version(version)
        await self.pool.execute("UPDATE projection_active SET version = $1", version)

    async def transaction(self, version: int, record: TransactionRecord) -> None:
        await self._version(version)
        c = record.counted
        await self.pool.execute(
            'INSERT INTO seen_transactions (version, transaction_id, partition, "offset",'
            " amount, occurred_at, recorded_at, producer, duplicates, conflicts)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            version,
            record.transaction_id,
            *(
                (None,) * 5 + ("",)  # stored before producers were recorded
                if c is None
                else (c.partition, c.offset, c.amount, c.occurred_at, c.recorded_at, c.producer)
            ),
            record.duplicates,
            record.conflict_count,
        )
        for k in record.conflicts:
            assert c is not None
            await self.pool.execute(
                "INSERT INTO transaction_conflicts (version, transaction_id, partition,"
                ' "offset", amount, occurred_at, recorded_at, producer, first_partition,'
                " first_offset, first_amount, first_occurred_at, first_producer)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                version,
                record.transaction_id,
                k.partition,
                k.offset,
                k.amount,
                k.occurred_at,
                k.recorded_at,
                k.producer,
                c.partition,
                c.offset,
                c.amount,
                c.occurred_at,
                c.producer,
            )


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Seeder]:
    if request.param == "memory":
        yield MemorySeeder()
    else:
        yield PostgresSeeder(request.getfixturevalue("pg_pool"))


EVERYTHING = BucketRange(first_second=0, last_second=10**12, first_minute=0, last_minute=10**10)


async def test_empty_projection(store: Seeder) -> None:
    snapshot = await store.reader.all_time()
    assert snapshot.version == 1
    assert snapshot.totals == Totals(0, Decimal(0), None, None)
    assert snapshot.positions == ()
    window = await store.reader.window(EVERYTHING)
    assert window.totals == Totals(0, Decimal(0), None, None)
    assert window.version == 1


async def test_all_time_merges_one_row_per_partition(store: Seeder) -> None:
    await store.partition(1, 2, 10, 12, totals(3, "100.10", "99.00", "0.10"))
    await store.partition(1, 0, 5, 5, totals(2, "0.20", "0.10", "0.10"))
    await store.partition(1, 1, 0, 7, totals(0, "0", None, None))  # nothing folded yet
    snapshot = await store.reader.all_time()
    assert snapshot.totals == totals(5, "100.30", "99.00", "0.10")
    assert snapshot.positions == (
        PartitionPosition(0, 5, 5),
        PartitionPosition(1, 0, 7),
        PartitionPosition(2, 10, 12),
    )
    assert [p.lag for p in snapshot.positions] == [0, 7, 2]
    assert snapshot.position.offsets == {0: 5, 1: 0, 2: 10}


async def test_sums_are_exact_decimals(store: Seeder) -> None:
    await store.partition(1, 0, 1, 1, totals(1, "0.10", "0.10", "0.10"))
    await store.partition(1, 1, 1, 1, totals(1, "0.20", "0.20", "0.20"))
    big = "123456789012345678901234567890.99"
    await store.partition(1, 2, 1, 1, totals(1, big, "1000000000000.00", "0.01"))
    snapshot = await store.reader.all_time()
    assert snapshot.totals.sum == Decimal("123456789012345678901234567891.29")
    assert isinstance(snapshot.totals.max, Decimal)


async def test_reads_only_the_active_version(store: Seeder) -> None:
    await store.partition(1, 0, 9, 9, totals(9, "9.00", "1.00", "1.00"))
    await store.second(1, 100, totals(9, "9.00", "1.00", "1.00"))
    await store.partition(2, 0, 4, 9, totals(4, "8.00", "2.00", "2.00"))
    await store.second(2, 100, totals(4, "8.00", "2.00", "2.00"))
    assert (await store.reader.all_time()).totals.count == 9
    await store.activate(2)
    snapshot = await store.reader.all_time()
    assert (snapshot.version, snapshot.totals) == (2, totals(4, "8.00", "2.00", "2.00"))
    assert snapshot.positions == (PartitionPosition(0, 4, 9),)
    window = await store.reader.window(EVERYTHING)
    assert (window.version, window.totals.count) == (2, 4)
    assert window.positions == (PartitionPosition(0, 4, 9),)


async def test_window_merges_second_and_minute_ranges_inclusively(store: Seeder) -> None:
    for second, amount in [(99, "1.00"), (100, "2.00"), (119, "4.00"), (120, "8.00")]:
        await store.second(1, second, totals(1, amount, amount, amount))
    for minute, amount in [(1, "16.00"), (2, "32.00"), (3, "64.00"), (4, "128.00")]:
        await store.minute(1, minute, totals(2, amount, amount, "0.01"))
    await store.partition(1, 3, 6, 6, totals(12, "255.00", "128.00", "0.01"))
    window = await store.reader.window(
        BucketRange(first_second=100, last_second=119, first_minute=2, last_minute=3)
    )
    assert window.totals == totals(6, "102.00", "64.00", "0.01")
    assert window.positions == (PartitionPosition(3, 6, 6),)


async def test_window_with_empty_ranges(store: Seeder) -> None:
    await store.second(1, 100, totals(1, "1.00", "1.00", "1.00"))
    await store.minute(1, 1, totals(1, "1.00", "1.00", "1.00"))
    only_minutes = BucketRange(first_second=120, last_second=119, first_minute=1, last_minute=1)
    assert (await store.reader.window(only_minutes)).totals.count == 1
    nothing = BucketRange(first_second=120, last_second=119, first_minute=2, last_minute=1)
    assert (await store.reader.window(nothing)).totals == Totals(0, Decimal(0), None, None)


async def test_ping_answers(store: Seeder) -> None:
    await store.reader.ping()


async def test_postgres_reader_down_is_unavailable(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=1)
    assert pool is not None
    reader = PostgresProjectionReader(pool, timeout_seconds=2)
    await pool.close()
    with pytest.raises(ProjectionUnavailableError):
        await reader.all_time()


AT = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def occurrence(partition: int, offset: int, amount: str, producer: str = "shop-a") -> Occurrence:
    return Occurrence(partition, offset, Decimal(amount), AT, AT + timedelta(seconds=1), producer)


async def test_transaction_not_found_still_reads_the_positions(store: Seeder) -> None:
    await store.partition(1, 0, 5, 7, totals(5, "5.00", "1.00", "1.00"))
    lookup = await store.reader.transaction("shop-a", "nope")
    assert (lookup.version, lookup.record) == (1, None)
    assert lookup.positions == (PartitionPosition(0, 5, 7),)
    assert lookup.position.offsets == {0: 5}


async def test_transaction_with_its_counted_occurrence_and_conflicts(store: Seeder) -> None:
    await store.partition(1, 2, 9, 9, totals(1, "10.00", "10.00", "10.00"))
    conflicts = (occurrence(2, 8, "0.01"), occurrence(2, 3, "99.99"))
    record = TransactionRecord("x", occurrence(2, 1, "10.00"), 4, 2, conflicts)
    await store.transaction(1, record)
    await store.transaction(1, TransactionRecord("y", occurrence(2, 0, "1.00")))
    lookup = await store.reader.transaction("shop-a", "x")
    assert lookup.record == TransactionRecord(
        "x", occurrence(2, 1, "10.00"), 4, 2, (conflicts[1], conflicts[0])
    )
    assert isinstance(lookup.record.counted.amount, Decimal)  # type: ignore[union-attr]
    assert lookup.positions == (PartitionPosition(2, 9, 9),)


async def test_transaction_lists_at_most_the_first_conflicts(store: Seeder) -> None:
    many = tuple(occurrence(0, n, "2.00") for n in range(MAX_LISTED_CONFLICTS + 5, 0, -1))
    await store.transaction(1, TransactionRecord("x", occurrence(0, 0, "1.00"), 105, 105, many))
    record = (await store.reader.transaction("shop-a", "x")).record
    assert record is not None
    assert record.conflict_count == MAX_LISTED_CONFLICTS + 5
    assert [o.offset for o in record.conflicts] == list(range(1, MAX_LISTED_CONFLICTS + 1))


async def test_transaction_stored_without_payload_and_of_the_active_version_only(
    store: Seeder,
) -> None:
    await store.transaction(1, TransactionRecord("old", None, 1, 0))
    await store.transaction(2, TransactionRecord("new", occurrence(0, 0, "1.00")))
    old = TransactionRecord("old", None, 1, 0)
    assert (await store.reader.transaction("shop-a", "old")).record == old  # any producer's
    assert (await store.reader.transaction("shop-z", "old")).record == old
    assert (await store.reader.transaction("shop-a", "new")).record is None
    await store.activate(2)
    lookup = await store.reader.transaction("shop-a", "new")
    assert lookup.version == 2
    assert lookup.record == TransactionRecord("new", occurrence(0, 0, "1.00"))


async def test_a_producers_transactions_are_its_own(store: Seeder) -> None:
    theirs = occurrence(2, 4, "99.99", "shop-b")
    await store.transaction(
        1, TransactionRecord("x", occurrence(2, 1, "10.00"), 1, 1, (occurrence(2, 3, "1.00"),))
    )
    await store.transaction(1, TransactionRecord("x", theirs, 1, 1, (theirs._replace(offset=7),)))
    mine = (await store.reader.transaction("shop-a", "x")).record
    other = (await store.reader.transaction("shop-b", "x")).record
    assert mine is not None
    assert other is not None
    assert (mine.counted, [o.offset for o in mine.conflicts]) == (occurrence(2, 1, "10.00"), [3])
    assert (other.counted, [o.offset for o in other.conflicts]) == (theirs, [7])
    assert (await store.reader.transaction("shop-c", "x")).record is None


async def test_window_merges_the_buckets_of_every_partition(store: Seeder) -> None:
    for partition in (0, 3, -1):  # -1: buckets folded before they were kept per partition
        await store.second(1, 100, totals(1, "1.00", "1.00", "1.00"), partition)
        await store.minute(1, 2, totals(2, "4.00", "3.00", "1.00"), partition)
    window = await store.reader.window(
        BucketRange(first_second=100, last_second=100, first_minute=2, last_minute=2)
    )
    assert window.totals == totals(9, "15.00", "3.00", "1.00")
