"""A batch's fresh part: worked out ahead (while the previous batch commits, assuming the stored
offsets are where the batch starts and every id is new) equals what the commit works out from
the stored offsets and the ids that are really new."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projector.batch import Batch, ConsumedRecord, Fresh, Poison, fresh_part
from projector.errors import OffsetGapError
from shared.events import TransactionRecorded

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def item(tx_id: str, cents: int, second: int) -> TransactionRecorded | Poison:
    if tx_id == "poison":
        return Poison("not an event", b"{}")
    at = AT + timedelta(seconds=second)
    return TransactionRecorded(uuid.uuid4(), tx_id, Decimal(cents).scaleb(-2), at, AT, "shop-a")


# per partition: its first offset and its items (ids from a small set, so they repeat)
partitions = st.dictionaries(
    st.integers(0, 5),
    st.tuples(
        st.integers(0, 1000),
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c", "d", "e", "f", "poison"]),
                st.integers(1, 10**6),
                st.integers(0, 130),
            ),
            min_size=1,
            max_size=15,
        ),
    ),
    min_size=1,
)


def batch_of(layout: dict[int, tuple[int, list[tuple[str, int, int]]]], seed: int) -> Batch:
    records = [
        ConsumedRecord(partition, start + index, item(*spec))
        for partition, (start, specs) in layout.items()
        for index, spec in enumerate(specs)
    ]
    random.Random(seed).shuffle(records)  # a batch's records come in any order of partitions
    return Batch(records=records)


def at_commit(batch: Batch, stored: dict[int, int]) -> Fresh:
    """What the commit works out when nothing was worked out ahead."""
    records = sorted(batch.records, key=lambda r: (r.partition, r.offset))
    fresh = [r for r in records if r.offset >= stored.get(r.partition, 0)]
    return Fresh.of(fresh, len(records) - len(fresh))


@given(layout=partitions, seed=st.integers(), new=st.sets(st.sampled_from("abcdef")))
def test_worked_out_ahead_equals_worked_out_at_commit(
    layout: dict[int, tuple[int, list[tuple[str, int, int]]]], seed: int, new: set[str]
) -> None:
    batch = batch_of(layout, seed)
    starts = {partition: start for partition, (start, _) in layout.items()}

    ahead, exact = fresh_part(batch, starts), at_commit(batch, starts)

    assert ahead is batch.whole()[1]  # type: ignore[index]
    assert (ahead.records, ahead.stale, ahead.poison) == (exact.records, 0, exact.poison)
    assert (ahead.events, ahead.first) == (exact.events, exact.first)
    ids = set(ahead.first[0]) if ahead.first else set()
    for new_ids in (ids, ids & new, set()):
        assert ahead.fold(new_ids) == exact.fold(new_ids)


def test_the_fold_is_worked_out_ahead_only_for_distinct_ids() -> None:
    distinct = batch_of({0: (0, [("a", 100, 0), ("b", 200, 0)])}, seed=1)
    repeated = batch_of({0: (0, [("a", 100, 0), ("a", 200, 0)])}, seed=1)
    assert distinct.whole()[1].all_new is not None  # type: ignore[index]
    assert repeated.whole()[1].all_new is None  # type: ignore[index]


def test_past_the_stored_offsets_the_commit_finds_the_fresh_records() -> None:
    batch = batch_of({0: (10, [("a", 100, 0), ("b", 200, 0)]), 1: (0, [("c", 1, 0)])}, seed=2)

    fresh = fresh_part(batch, {0: 11, 1: 0})

    assert [(r.partition, r.offset) for r in fresh.records] == [(0, 11), (1, 0)]
    assert fresh.stale == 1
    assert fresh.fold({"b", "c"})[0].partitions[0].sum == Decimal("2.00")


def test_a_gap_is_refused_with_or_without_the_work_ahead() -> None:
    inside = Batch(
        records=[ConsumedRecord(0, 0, item("a", 1, 0)), ConsumedRecord(0, 2, item("b", 1, 0))]
    )
    before = batch_of({0: (5, [("a", 1, 0)])}, seed=3)

    assert inside.whole() is None
    with pytest.raises(OffsetGapError):
        fresh_part(inside, {0: 0})
    with pytest.raises(OffsetGapError):
        fresh_part(before, {0: 4})
