"""One contract, two stores: the in-memory fake and PostgreSQL must behave the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from projector.adapters.postgres_store import PostgresProjectionStore
from projector.batch import Batch, decode
from projector.errors import OffsetGapError, VersionChangedError
from projector.ports import ProjectionStore
from shared.events import serialize
from shared.totals import Totals
from tests.doubles.memory_store import InMemoryProjectionStore
from tests.integration.support import event

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> ProjectionStore:
    if request.param == "memory":
        return InMemoryProjectionStore()
    return PostgresProjectionStore(request.getfixturevalue("pg_pool"))


def batch(*records: tuple[int, int, bytes | None], ends: dict[int, int] | None = None) -> Batch:
    return Batch(records=[decode(p, o, v) for p, o, v in records], log_end_offsets=ends or {})


def ev(amount: str, tx: str) -> bytes:
    return serialize(event(amount, transaction_id=tx, occurred_at=AT))


async def test_commit_folds_and_stores_next_offsets(store: ProjectionStore) -> None:
    result = await store.commit(
        1,
        batch((0, 0, ev("1.50", "a")), (0, 1, ev("2.50", "b")), (3, 0, ev("0.01", "c"))),
        live=True,
    )
    assert len(result.folded) == 3
    assert await store.totals(1) == Totals(3, Decimal("4.01"), Decimal("2.50"), Decimal("0.01"))
    assert await store.stored_offsets(1, [0, 3, 5]) == {0: 2, 3: 1, 5: 0}


async def test_a_repeated_transaction_id_counts_once_across_batches_and_partitions(
    store: ProjectionStore,
) -> None:
    await store.commit(1, batch((0, 0, ev("1.00", "x")), (0, 1, ev("1.00", "x"))), live=True)
    result = await store.commit(
        1, batch((2, 0, ev("7.00", "x")), (2, 1, ev("2.00", "y"))), live=True
    )
    assert (len(result.folded), result.duplicates) == (1, 1)
    assert await store.totals(1) == Totals(2, Decimal("3.00"), Decimal("2.00"), Decimal("1.00"))


async def test_a_redelivered_batch_is_skipped_as_stale(store: ProjectionStore) -> None:
    first = batch((1, 0, ev("1.00", "a")), (1, 1, ev("2.00", "b")))
    await store.commit(1, first, live=True)
    again = batch((1, 0, ev("1.00", "a")), (1, 1, ev("2.00", "b")), (1, 2, ev("3.00", "c")))
    result = await store.commit(1, again, live=True)
    assert (result.stale, len(result.folded), result.duplicates) == (2, 1, 0)
    assert (await store.totals(1)).count == 3
    assert await store.stored_offsets(1, [1]) == {1: 3}


async def test_a_batch_past_the_stored_offset_is_refused(store: ProjectionStore) -> None:
    with pytest.raises(OffsetGapError):
        await store.commit(1, batch((0, 5, ev("1.00", "a"))), live=True)
    assert (await store.totals(1)).count == 0
    assert await store.stored_offsets(1, [0]) == {0: 0}


async def test_live_commit_into_an_inactive_version_is_refused(store: ProjectionStore) -> None:
    with pytest.raises(VersionChangedError) as caught:
        await store.commit(2, batch((0, 0, ev("1.00", "a"))), live=True)
    assert caught.value.active == 1
    result = await store.commit(2, batch((0, 0, ev("1.00", "a"))), live=False)
    assert len(result.folded) == 1
    assert (await store.totals(1)).count == 0


async def test_poison_advances_the_offset_and_is_never_counted(store: ProjectionStore) -> None:
    result = await store.commit(
        1, batch((0, 0, b"\x00garbage"), (0, 1, None), (0, 2, ev("4.20", "ok"))), live=True
    )
    assert ([(p, o) for p, o, _ in result.poison], len(result.folded)) == ([(0, 0), (0, 1)], 1)
    assert await store.totals(1) == Totals.of(Decimal("4.20"))
    assert await store.stored_offsets(1, [0]) == {0: 3}


async def test_a_repeat_with_another_payload_is_a_conflict_and_a_retry_is_not(
    store: ProjectionStore,
) -> None:
    await store.commit(1, batch((0, 0, ev("10.00", "x")), (0, 1, ev("10.00", "x"))), live=True)
    result = await store.commit(
        1,
        batch((0, 2, ev("99.99", "x")), (3, 0, ev("10.00", "x")), (3, 1, ev("1.00", "y"))),
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
    store: ProjectionStore, moment: datetime
) -> None:
    retry = serialize(event("3.10", transaction_id="t", occurred_at=moment))
    await store.commit(1, batch((0, 0, retry)), live=True)
    result = await store.commit(1, batch((0, 1, retry)), live=True)
    assert (result.duplicates, result.conflicts) == (1, ())
    later = serialize(
        event("3.10", transaction_id="t", occurred_at=moment + timedelta(microseconds=1))
    )
    result = await store.commit(1, batch((0, 2, later)), live=True)
    assert [c.first.occurred_at for c in result.conflicts] == [moment]
