"""One contract, two stores: the in-memory fake and PostgreSQL must behave the same, step by
step (`ProjectionTransaction`), and as the commit sequences the steps (`projector.commit`).

What the steps write and no port reads back (repeat counts, conflict rows, buckets) is read
through a `Rows` view of each store: SQL for PostgreSQL, its state for the fake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import asyncpg
import pytest

from projector.adapters.postgres_store import ROLL_UP_LOCK, PostgresProjectionStore
from projector.batch import Batch
from projector.commit import commit
from projector.conflicts import Conflict, Repeats
from projector.errors import (
    OffsetGapError,
    RecordRefusedError,
    StaleBatchError,
    StoreUnavailable,
    VersionChangedError,
)
from projector.fold import Delta, FirstColumns
from projector.ports import LockedPartitions, ProjectionStore
from projector.records import Poison, decode
from shared.events import serialize
from shared.projection import ALL_PARTITIONS, Occurrence, TransactionKey
from shared.totals import Totals
from tests.doubles.memory_store import InMemoryProjectionStore, SeenRow
from tests.integration.support import event

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
SECOND = int(AT.timestamp())


class Rows(Protocol):
    """What a store holds beyond what its port reads."""

    store: ProjectionStore

    async def seen(self, version: int, key: TransactionKey) -> tuple[int, int] | None:
        """(duplicates, conflicts) of a stored key."""
        ...

    async def conflicts(self, version: int) -> list[tuple[str, str, int, int]]:
        """(producer, transaction_id, partition, offset) of every conflict, sorted."""
        ...

    async def seconds(self, version: int) -> dict[tuple[int, int], Totals]:
        """Second buckets by (partition, epoch second)."""
        ...

    async def plant_legacy_id(self, version: int, transaction_id: str) -> None:
        """Store `transaction_id` as migration 005 left an id folded before producers were
        recorded: producer '', no payload, its version marked `legacy_ids`."""
        ...

    async def refuse_amounts_from(self, digits: int) -> None:
        """Make the store refuse to keep an amount of `digits` integer digits or more, a valid
        amount all the same (a value out of its column's range: SQLSTATE 22003)."""
        ...


class MemoryRows:
    def __init__(self) -> None:
        self.fake = InMemoryProjectionStore()
        self.store: ProjectionStore = self.fake

    async def seen(self, version: int, key: TransactionKey) -> tuple[int, int] | None:
        row = self.fake.versions[version].seen.get(key)
        return None if row is None else (row.duplicates, row.conflicts)

    async def conflicts(self, version: int) -> list[tuple[str, str, int, int]]:
        return sorted(self.fake.versions[version].conflicts)

    async def seconds(self, version: int) -> dict[tuple[int, int], Totals]:
        return dict(self.fake.versions[version].seconds)

    async def plant_legacy_id(self, version: int, transaction_id: str) -> None:
        state = self.fake.versions[version]
        state.seen[("", transaction_id)] = SeenRow(None)
        state.legacy_ids = True

    async def refuse_amounts_from(self, digits: int) -> None:
        self.fake.refuse(lambda occurrence: occurrence.amount >= 10 ** (digits - 1))


class PostgresRows:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.store: ProjectionStore = PostgresProjectionStore(pool)

    async def seen(self, version: int, key: TransactionKey) -> tuple[int, int] | None:
        row = await self.pool.fetchrow(
            "SELECT duplicates, conflicts FROM seen_transactions"
            " WHERE version = $1 AND producer = $2 AND transaction_id = $3",
            version,
            *key,
        )
        return None if row is None else (row["duplicates"], row["conflicts"])

    async def conflicts(self, version: int) -> list[tuple[str, str, int, int]]:
        rows = await self.pool.fetch(
            'SELECT producer, transaction_id, partition, "offset" FROM transaction_conflicts'
            " WHERE version = $1 ORDER BY 1, 2, 3, 4",
            version,
        )
        return [tuple(row) for row in rows]

    async def seconds(self, version: int) -> dict[tuple[int, int], Totals]:
        rows = await self.pool.fetch(
            "SELECT partition, bucket, tx_count, tx_sum, tx_max, tx_min FROM second_buckets"
            " WHERE version = $1",
            version,
        )
        return {
            (r["partition"], r["bucket"]): Totals(
                r["tx_count"], r["tx_sum"], r["tx_max"], r["tx_min"]
            )
            for r in rows
        }

    async def plant_legacy_id(self, version: int, transaction_id: str) -> None:
        await self.pool.execute(
            "INSERT INTO seen_transactions (version, producer, transaction_id) VALUES ($1, '', $2)",
            version,
            transaction_id,
        )
        await self.pool.execute(
            "UPDATE projection_versions SET legacy_ids = true WHERE version = $1", version
        )

    async def refuse_amounts_from(self, digits: int) -> None:
        await self.pool.execute(
            f"ALTER TABLE seen_transactions ALTER COLUMN amount TYPE numeric({digits + 1}, 2)"
        )


@pytest.fixture(params=["memory", "postgres"])
def rows(request: pytest.FixtureRequest) -> Iterator[Rows]:
    if request.param == "memory":
        yield MemoryRows()
    else:
        yield PostgresRows(request.getfixturevalue("pg_pool"))


def batch(*records: tuple[int, int, bytes | None], ends: dict[int, int] | None = None) -> Batch:
    return Batch(records=[decode(p, o, v) for p, o, v in records], log_end_offsets=ends or {})


def ev(amount: str, tx: str, producer: str = "test", at: datetime = AT) -> bytes:
    return serialize(event(amount, transaction_id=tx, occurred_at=at)._replace(producer=producer))


def first_columns(*keys: tuple[str, str, int, int, str]) -> FirstColumns:
    """(producer, transaction_id, partition, offset, amount) each, at `AT`."""
    return (
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
        [Decimal(k[4]) for k in keys],
        [AT] * len(keys),
        [AT + timedelta(seconds=1)] * len(keys),
        [k[0] for k in keys],
    )


# -- the steps ------------------------------------------------------------------------------


async def test_locked_partitions_start_at_zero_and_move_with_apply(rows: Rows) -> None:
    async with rows.store.transaction(1) as tx:
        assert await tx.lock_partitions([0, 3]) == LockedPartitions({0: 0, 3: 0}, legacy_ids=False)
        await tx.apply(Delta(), next_offsets={0: 5, 3: 2}, log_end={0: 9}, poison=[])
    async with rows.store.transaction(1) as tx:
        assert (await tx.lock_partitions([3, 0, 4])).offsets == {0: 5, 3: 2, 4: 0}
    assert await rows.store.stored_offsets(1, [0, 3, 4]) == {0: 5, 3: 2, 4: 0}


async def test_insert_says_which_keys_were_stored_before_and_an_id_is_per_producer(
    rows: Rows,
) -> None:
    async with rows.store.transaction(1) as tx:
        await tx.lock_partitions([0])
        before = await tx.insert_first_occurrences(
            first_columns(("shop-a", "x", 0, 0, "1.00"), ("shop-a", "y", 0, 1, "2.00")),
            legacy_ids=False,
        )
        assert before == set()
    async with rows.store.transaction(1) as tx:
        await tx.lock_partitions([0])
        before = await tx.insert_first_occurrences(
            first_columns(("shop-a", "x", 0, 2, "1.00"), ("shop-b", "x", 0, 3, "9.00")),
            legacy_ids=False,
        )
        assert before == {("shop-a", "x")}
        counted = await tx.counted_occurrences([("shop-a", "x"), ("shop-b", "x"), ("shop-c", "x")])
    later = AT + timedelta(seconds=1)
    assert counted == {  # a transaction reads its own writes; shop-c's was never stored
        ("shop-a", "x"): Occurrence(0, 0, Decimal("1.00"), AT, later, "shop-a"),
        ("shop-b", "x"): Occurrence(0, 3, Decimal("9.00"), AT, later, "shop-b"),
    }


async def test_a_legacy_id_is_claimed_for_every_producer_when_the_lock_says_so(
    rows: Rows,
) -> None:
    await rows.plant_legacy_id(1, "old")
    async with rows.store.transaction(1) as tx:
        locked = await tx.lock_partitions([0])
        assert locked.legacy_ids
        before = await tx.insert_first_occurrences(
            first_columns(("shop-d", "old", 0, 0, "7.00"), ("shop-d", "new", 0, 1, "1.00")),
            legacy_ids=locked.legacy_ids,
        )
        assert before == {("shop-d", "old")}
        assert await tx.counted_occurrences([("shop-d", "old")]) == {("shop-d", "old"): None}
        await tx.record_repeats(Repeats(duplicates={("shop-d", "old"): 1}))
    assert await rows.seen(1, ("", "old")) == (1, 0)
    assert await rows.seen(1, ("shop-d", "old")) is None
    assert await rows.seen(1, ("shop-d", "new")) == (0, 0)


async def test_repeats_add_to_the_counts_and_conflicts_are_stored(rows: Rows) -> None:
    first = Occurrence(0, 0, Decimal("1.00"), AT, AT, "shop-a")
    repeat = first._replace(offset=4, amount=Decimal("2.00"))
    async with rows.store.transaction(1) as tx:
        await tx.lock_partitions([0])
        await tx.insert_first_occurrences(
            first_columns(("shop-a", "x", 0, 0, "1.00")), legacy_ids=False
        )
    async with rows.store.transaction(1) as tx:
        await tx.lock_partitions([0])
        await tx.record_repeats(
            Repeats(
                duplicates={("shop-a", "x"): 3},
                conflict_counts={("shop-a", "x"): 1},
                conflicts=[Conflict("x", first, repeat)],
            )
        )
    assert await rows.seen(1, ("shop-a", "x")) == (3, 1)
    assert await rows.conflicts(1) == [("shop-a", "x", 0, 4)]


async def test_apply_adds_totals_buckets_and_poison_per_partition(rows: Rows) -> None:
    one, two = Totals.of(Decimal("1.00")), Totals.of(Decimal("2.00"))
    delta = Delta(
        partitions={0: one, 1: two},
        seconds={(0, SECOND): one, (1, SECOND): two},
        minutes={(0, SECOND // 60): one, (1, SECOND // 60): two},
    )
    async with rows.store.transaction(1) as tx:
        await tx.lock_partitions([0, 1])
        poison = [(1, 0, Poison("bad", b"x"))]
        await tx.apply(delta, next_offsets={0: 1, 1: 2}, log_end={}, poison=poison)
        await tx.notify({0: 1, 1: 2})
    again = Delta(partitions={0: one}, seconds={(0, SECOND): one}, minutes={(0, SECOND // 60): one})
    async with rows.store.transaction(1) as tx:
        await tx.lock_partitions([0])
        await tx.apply(again, next_offsets={0: 2}, log_end={}, poison=[])
    assert await rows.store.totals(1) == Totals(3, Decimal("4.00"), Decimal("2.00"), Decimal(1))
    assert await rows.seconds(1) == {(0, SECOND): one.merge(one), (1, SECOND): two}


async def test_a_transaction_that_raises_leaves_nothing(rows: Rows) -> None:
    async def fold_then_fail() -> None:
        async with rows.store.transaction(1) as tx:
            await tx.lock_partitions([0])
            await tx.insert_first_occurrences(
                first_columns(("shop-a", "x", 0, 0, "1.00")), legacy_ids=False
            )
            await tx.apply(Delta(), next_offsets={0: 1}, log_end={}, poison=[])
            raise RuntimeError

    with pytest.raises(RuntimeError):
        await fold_then_fail()
    assert await rows.store.stored_offsets(1, [0]) == {0: 0}
    assert await rows.seen(1, ("shop-a", "x")) is None


async def test_a_value_the_store_refuses_is_a_record_refused_error(rows: Rows) -> None:
    await rows.refuse_amounts_from(6)

    async def insert() -> None:
        async with rows.store.transaction(1) as tx:
            await tx.lock_partitions([0])
            await tx.insert_first_occurrences(
                first_columns(("shop-a", "x", 0, 0, "1.00"), ("shop-a", "y", 0, 1, "131313.13")),
                legacy_ids=False,
            )

    with pytest.raises(RecordRefusedError):
        await insert()
    assert await rows.seen(1, ("shop-a", "x")) is None


# -- the commit over the steps ----------------------------------------------------------------


async def test_commit_folds_and_stores_next_offsets(rows: Rows) -> None:
    store = rows.store
    result = await commit(
        store,
        batch((0, 0, ev("1.50", "a")), (0, 1, ev("2.50", "b")), (3, 0, ev("0.01", "c"))),
        version=1,
        live=True,
    )
    assert len(result.folded) == 3
    assert await store.totals(1) == Totals(3, Decimal("4.01"), Decimal("2.50"), Decimal("0.01"))
    assert await store.stored_offsets(1, [0, 3, 5]) == {0: 2, 3: 1, 5: 0}
    assert set(await rows.seconds(1)) == {(0, SECOND), (3, SECOND)}


async def test_a_repeated_key_counts_once_across_batches_and_partitions(rows: Rows) -> None:
    store = rows.store
    await commit(
        store, batch((0, 0, ev("1.00", "x")), (0, 1, ev("1.00", "x"))), version=1, live=True
    )
    result = await commit(
        store, batch((2, 0, ev("7.00", "x")), (2, 1, ev("2.00", "y"))), version=1, live=True
    )
    assert (len(result.folded), result.duplicates) == (1, 1)
    assert await store.totals(1) == Totals(2, Decimal("3.00"), Decimal("2.00"), Decimal("1.00"))


async def test_the_same_id_from_two_producers_is_two_transactions(rows: Rows) -> None:
    store = rows.store
    await commit(store, batch((0, 0, ev("1.00", "x", "shop-a"))), version=1, live=True)
    result = await commit(
        store,
        batch((0, 1, ev("5.00", "x", "shop-b")), (0, 2, ev("5.00", "x", "shop-b"))),
        version=1,
        live=True,
    )
    assert (len(result.folded), result.duplicates, result.conflicts) == (1, 1, ())
    assert await store.totals(1) == Totals(2, Decimal("6.00"), Decimal("5.00"), Decimal("1.00"))
    assert await rows.seen(1, ("shop-a", "x")) == (0, 0)
    assert await rows.seen(1, ("shop-b", "x")) == (1, 0)


async def test_a_redelivered_batch_is_refused_as_stale(rows: Rows) -> None:
    store = rows.store
    await commit(
        store, batch((1, 0, ev("1.00", "a")), (1, 1, ev("2.00", "b"))), version=1, live=True
    )
    again = batch((1, 0, ev("1.00", "a")), (1, 1, ev("2.00", "b")), (1, 2, ev("3.00", "c")))
    with pytest.raises(StaleBatchError):
        await commit(store, again, version=1, live=True)
    assert (await store.totals(1)).count == 2
    assert await store.stored_offsets(1, [1]) == {1: 2}


async def test_a_batch_past_the_stored_offset_is_refused(rows: Rows) -> None:
    store = rows.store
    with pytest.raises(OffsetGapError):
        await commit(store, batch((0, 5, ev("1.00", "a"))), version=1, live=True)
    with pytest.raises(OffsetGapError):
        await commit(
            store, batch((0, 0, ev("1.00", "a")), (0, 2, ev("1.00", "b"))), version=1, live=True
        )
    assert (await store.totals(1)).count == 0
    assert await store.stored_offsets(1, [0]) == {0: 0}


async def test_live_commit_into_an_inactive_version_is_refused(rows: Rows) -> None:
    store = rows.store
    with pytest.raises(VersionChangedError) as caught:
        await commit(store, batch((0, 0, ev("1.00", "a"))), version=2, live=True)
    assert caught.value.active == 1
    result = await commit(store, batch((0, 0, ev("1.00", "a"))), version=2, live=False)
    assert len(result.folded) == 1
    assert (await store.totals(1)).count == 0


async def test_poison_advances_the_offset_and_is_never_counted(rows: Rows) -> None:
    store = rows.store
    result = await commit(
        store,
        batch((0, 0, b"\x00garbage"), (0, 1, None), (0, 2, ev("4.20", "ok"))),
        version=1,
        live=True,
    )
    assert ([(p, o) for p, o, _ in result.poison], len(result.folded)) == ([(0, 0), (0, 1)], 1)
    assert await store.totals(1) == Totals.of(Decimal("4.20"))
    assert await store.stored_offsets(1, [0]) == {0: 3}


async def test_a_record_the_store_refuses_becomes_poison_and_the_rest_is_folded(
    rows: Rows,
) -> None:
    await rows.refuse_amounts_from(6)
    store = rows.store
    records = [(p, o, ev(f"{o + 1}.00", f"t-{p}-{o}")) for p in (0, 1) for o in range(5)]
    refused = (1, 2, ev("131313.13", "refused"))
    records[7] = refused
    result = await commit(store, batch(*records, ends={0: 5, 1: 9}), version=1, live=True)
    assert [(p, o, why.reason[:21]) for p, o, why in result.poison] == [
        (1, 2, "refused by the store:")
    ]
    assert (len(result.folded), result.refused) == (9, 1)
    assert await store.totals(1) == Totals(9, Decimal("27.00"), Decimal("5.00"), Decimal("1.00"))
    assert await store.stored_offsets(1, [0, 1]) == {0: 5, 1: 5}


async def test_a_second_refused_record_in_a_batch_is_the_stores_fault_not_poison(
    rows: Rows,
) -> None:
    await rows.refuse_amounts_from(6)
    store = rows.store
    records = [(0, o, ev(f"{o + 1}.00", f"t-{o}")) for o in range(8)]
    records[3] = (0, 3, ev("131313.13", "refused"))
    records[6] = (0, 6, ev("262626.26", "refused too"))
    with pytest.raises(StoreUnavailable, match="more than one record"):
        await commit(store, batch(*records, ends={0: 8}), version=1, live=True)
    # what precedes the first refused record is committed; nothing is poison
    assert await store.stored_offsets(1, [0]) == {0: 3}
    assert await store.totals(1) == Totals(3, Decimal("6.00"), Decimal("3.00"), Decimal("1.00"))
    result = await commit(store, batch(*records[3:6], ends={0: 8}), version=1, live=True)
    assert ([o for _, o, _ in result.poison], result.refused) == ([3], 1)  # one is a record's


async def test_a_repeat_with_another_payload_is_a_conflict_and_a_retry_is_not(
    rows: Rows,
) -> None:
    store = rows.store
    await commit(
        store, batch((0, 0, ev("10.00", "x")), (0, 1, ev("10.00", "x"))), version=1, live=True
    )
    result = await commit(
        store,
        batch((0, 2, ev("99.99", "x")), (3, 0, ev("10.00", "x")), (3, 1, ev("1.00", "y"))),
        version=1,
        live=True,
    )
    assert (len(result.folded), result.duplicates) == (1, 2)
    assert [
        (c.transaction_id, c.first.partition, c.first.offset, c.first.amount, c.repeat)
        for c in result.conflicts
    ] == [("x", 0, 0, Decimal("10.00"), result.conflicts[0].repeat)]
    repeat = result.conflicts[0].repeat
    assert (repeat.partition, repeat.offset, repeat.amount) == (0, 2, Decimal("99.99"))
    assert await store.totals(1) == Totals(2, Decimal("11.00"), Decimal("10.00"), Decimal("1.00"))
    assert await rows.seen(1, ("test", "x")) == (3, 1)
    assert await rows.conflicts(1) == [("test", "x", 0, 2)]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 26, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 7, 999_999, tzinfo=UTC),
        datetime(1850, 6, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC),
    ],
    ids=["now", "epoch-edge", "old", "year-1", "just-before-epoch", "year-9999"],
)
async def test_a_retry_keeps_the_exact_microsecond_so_it_is_no_conflict(
    rows: Rows, moment: datetime
) -> None:
    store = rows.store
    retry = ev("3.10", "t", at=moment)
    await commit(store, batch((0, 0, retry)), version=1, live=True)
    result = await commit(store, batch((0, 1, retry)), version=1, live=True)
    assert (result.duplicates, result.conflicts) == (1, ())
    later = ev("3.10", "t", at=moment + timedelta(microseconds=1))
    result = await commit(store, batch((0, 2, later)), version=1, live=True)
    assert [c.first.occurred_at for c in result.conflicts] == [moment]


# -- the roll-up of buckets ---------------------------------------------------------------


async def test_roll_up_merges_the_partitions_buckets_in_its_range(rows: Rows) -> None:
    store = rows.store
    for partition in (0, 1, 2):
        await commit(
            store,
            batch(
                (partition, 0, ev("1.00", f"a-{partition}", at=AT)),
                (partition, 1, ev("2.00", f"b-{partition}", at=AT + timedelta(seconds=60))),
            ),
            version=1,
            live=True,
        )
    totals = await store.totals(1)
    before = await rows.seconds(1)

    moved = await store.roll_up(1, start=SECOND, before=SECOND + 60)

    assert moved == 3 + 3  # three second rows, and the three minute rows wholly before it
    after = await rows.seconds(1)
    assert after[(ALL_PARTITIONS, SECOND)] == Totals(3, Decimal("3.00"), Decimal(1), Decimal(1))
    assert {k: v for k, v in after.items() if k[1] != SECOND} == {
        k: v for k, v in before.items() if k[1] != SECOND
    }
    assert await store.totals(1) == totals  # partition totals are no buckets
    assert await store.roll_up(1, start=SECOND, before=SECOND + 60) == 0


async def test_lag_is_the_records_between_the_stored_offsets_and_the_log_ends(
    rows: Rows,
) -> None:
    store = rows.store
    await commit(store, batch((0, 0, ev("1.00", "a")), ends={0: 5}), version=1, live=True)
    await commit(store, batch((1, 0, ev("1.00", "b")), ends={1: 1}), version=1, live=True)
    assert await store.lag(1) == 4


async def test_one_roll_up_at_a_time(pg_pool: asyncpg.Pool) -> None:
    store = PostgresProjectionStore(pg_pool)
    async with pg_pool.acquire() as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock($1)", ROLL_UP_LOCK)
        assert await store.roll_up(1, start=0, before=SECOND) is None
    assert await store.roll_up(1, start=0, before=SECOND) == 0
