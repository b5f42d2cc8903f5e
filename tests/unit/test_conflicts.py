"""Repeated transactions over the in-memory store: a plain retry is a silent duplicate, a
different payload is a recorded conflict; the first occurrence stays the counted one. A
producer's ids are its own: the same id from two producers is two transactions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from projector.batch import Batch
from projector.commit import CommitResult, commit
from projector.conflicts import classify_repeats
from projector.records import ConsumedRecord
from shared.events import TransactionRecorded
from shared.projection import Occurrence
from shared.totals import Totals
from tests.doubles.memory_store import InMemoryProjectionStore

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def tx(
    tx_id: str, amount: str, *, at: datetime = AT, producer: str = "shop-a"
) -> TransactionRecorded:
    return TransactionRecorded(uuid.uuid4(), tx_id, Decimal(amount), at, AT, producer)


def batch(*records: tuple[int, int, TransactionRecorded]) -> Batch:
    return Batch(records=[ConsumedRecord(p, o, e) for p, o, e in records])


async def fold(
    store: InMemoryProjectionStore, *records: tuple[int, int, TransactionRecorded]
) -> CommitResult:
    return await commit(store, batch(*records), version=1, live=True)


async def test_a_plain_retry_is_a_duplicate_not_a_conflict() -> None:
    store = InMemoryProjectionStore()
    await fold(store, (0, 0, tx("x", "10.00")))
    result = await fold(store, (0, 1, tx("x", "10.0")))
    assert (len(result.folded), result.duplicates, result.conflicts) == (0, 1, ())
    assert store.versions[1].seen[("shop-a", "x")].duplicates == 1
    assert store.versions[1].seen[("shop-a", "x")].conflicts == 0
    assert store.versions[1].conflicts == {}


async def test_the_same_id_from_two_producers_is_two_transactions() -> None:
    store = InMemoryProjectionStore()
    await fold(store, (0, 0, tx("x", "10.00")))
    result = await fold(
        store,
        (0, 1, tx("x", "99.99", producer="shop-b")),
        (0, 2, tx("x", "10.00", producer="shop-c")),
    )
    assert (len(result.folded), result.duplicates, result.conflicts) == (2, 0, ())
    assert await store.totals(1) == Totals(3, Decimal("119.99"), Decimal("99.99"), Decimal("10.00"))
    assert sorted(store.versions[1].seen) == [("shop-a", "x"), ("shop-b", "x"), ("shop-c", "x")]
    assert store.versions[1].conflicts == {}


async def test_a_different_amount_is_a_conflict_across_batches() -> None:
    store = InMemoryProjectionStore()
    await fold(store, (0, 0, tx("x", "10.00")))
    result = await fold(store, (0, 1, tx("x", "99.99")), (0, 2, tx("y", "1.00")))
    assert (len(result.folded), result.duplicates) == (1, 1)
    (conflict,) = result.conflicts
    assert conflict.transaction_id == "x"
    assert (conflict.first.partition, conflict.first.offset, conflict.first.amount) == (
        0,
        0,
        Decimal("10.00"),
    )
    assert (conflict.repeat.offset, conflict.repeat.amount, conflict.repeat.producer) == (
        1,
        Decimal("99.99"),
        "shop-a",
    )
    assert await store.totals(1) == Totals(2, Decimal("11.00"), Decimal("10.00"), Decimal("1.00"))
    row = store.versions[1].seen[("shop-a", "x")]
    assert (row.duplicates, row.conflicts) == (1, 1)
    assert list(store.versions[1].conflicts) == [("shop-a", "x", 0, 1)]


async def test_a_different_occurred_at_is_a_conflict_within_one_batch() -> None:
    store = InMemoryProjectionStore()
    later = AT + timedelta(seconds=1)
    result = await fold(
        store, (2, 0, tx("x", "5.00")), (2, 1, tx("x", "5.00", at=later)), (2, 2, tx("x", "5.00"))
    )
    assert (len(result.folded), result.duplicates) == (1, 2)
    assert [(c.first.offset, c.repeat.offset) for c in result.conflicts] == [(0, 1)]
    row = store.versions[1].seen[("shop-a", "x")]
    assert (row.duplicates, row.conflicts) == (2, 1)


async def test_a_conflict_across_partitions_keeps_the_first_folded() -> None:
    store = InMemoryProjectionStore()
    await fold(store, (4, 0, tx("x", "10.00")))
    result = await fold(store, (1, 0, tx("x", "12.00")))
    (conflict,) = result.conflicts
    assert (conflict.first.partition, conflict.repeat.partition) == (4, 1)
    assert (await store.totals(1)).sum == Decimal("10.00")


def test_a_counted_occurrence_stored_without_payload_makes_repeats_plain_duplicates() -> None:
    records = [ConsumedRecord(0, 7, tx("old", "3.00"))]
    repeats = classify_repeats(records, set(), {("shop-a", "old"): None})
    assert (repeats.duplicates, repeats.conflicts) == ({("shop-a", "old"): 1}, [])


def test_occurrences_compare_amount_and_instant_exactly() -> None:
    a = Occurrence(0, 0, Decimal("1.10"), AT, AT, "p")
    assert a.same_payload(a._replace(amount=Decimal("1.1"), partition=3, producer="q"))
    assert a.same_payload(a._replace(occurred_at=AT.astimezone(UTC)))
    assert not a.same_payload(a._replace(amount=Decimal("1.11")))
    assert not a.same_payload(a._replace(occurred_at=AT + timedelta(microseconds=1)))
