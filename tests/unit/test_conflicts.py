"""Repeated transaction ids over the in-memory store: a plain retry is a silent duplicate, a
different payload is a recorded conflict; the first occurrence stays the counted one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from projector.batch import Batch, ConsumedRecord
from projector.conflicts import classify_repeats
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


async def test_a_plain_retry_is_a_duplicate_not_a_conflict() -> None:
    store = InMemoryProjectionStore()
    await store.commit(1, batch((0, 0, tx("x", "10.00"))), live=True)
    result = await store.commit(1, batch((0, 1, tx("x", "10.0", producer="shop-b"))), live=True)
    assert (len(result.folded), result.duplicates, result.conflicts) == (0, 1, ())
    assert store.versions[1].seen["x"].duplicates == 1
    assert store.versions[1].seen["x"].conflicts == 0
    assert store.versions[1].conflicts == {}


async def test_a_different_amount_is_a_conflict_across_batches() -> None:
    store = InMemoryProjectionStore()
    await store.commit(1, batch((0, 0, tx("x", "10.00"))), live=True)
    result = await store.commit(
        1, batch((0, 1, tx("x", "99.99", producer="shop-b")), (0, 2, tx("y", "1.00"))), live=True
    )
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
        "shop-b",
    )
    assert await store.totals(1) == Totals(2, Decimal("11.00"), Decimal("10.00"), Decimal("1.00"))
    row = store.versions[1].seen["x"]
    assert (row.duplicates, row.conflicts) == (1, 1)
    assert list(store.versions[1].conflicts) == [("x", 0, 1)]


async def test_a_different_occurred_at_is_a_conflict_within_one_batch() -> None:
    store = InMemoryProjectionStore()
    later = AT + timedelta(seconds=1)
    result = await store.commit(
        1,
        batch((2, 0, tx("x", "5.00")), (2, 1, tx("x", "5.00", at=later)), (2, 2, tx("x", "5.00"))),
        live=True,
    )
    assert (len(result.folded), result.duplicates) == (1, 2)
    assert [(c.first.offset, c.repeat.offset) for c in result.conflicts] == [(0, 1)]
    row = store.versions[1].seen["x"]
    assert (row.duplicates, row.conflicts) == (2, 1)


async def test_a_conflict_across_partitions_keeps_the_first_folded() -> None:
    store = InMemoryProjectionStore()
    await store.commit(1, batch((4, 0, tx("x", "10.00"))), live=True)
    result = await store.commit(1, batch((1, 0, tx("x", "12.00", producer="other"))), live=True)
    (conflict,) = result.conflicts
    assert (conflict.first.partition, conflict.repeat.partition) == (4, 1)
    assert (await store.totals(1)).sum == Decimal("10.00")


def test_a_counted_occurrence_stored_without_payload_makes_repeats_plain_duplicates() -> None:
    records = [ConsumedRecord(0, 7, tx("old", "3.00"))]
    repeats = classify_repeats(records, set(), {"old": None})
    assert (repeats.duplicates, repeats.conflicts) == ({"old": 1}, [])


def test_occurrences_compare_amount_and_instant_exactly() -> None:
    a = Occurrence(0, 0, Decimal("1.10"), AT, AT, "p")
    assert a.same_payload(a._replace(amount=Decimal("1.1"), partition=3, producer="q"))
    assert a.same_payload(a._replace(occurred_at=AT.astimezone(UTC)))
    assert not a.same_payload(a._replace(amount=Decimal("1.11")))
    assert not a.same_payload(a._replace(occurred_at=AT + timedelta(microseconds=1)))
