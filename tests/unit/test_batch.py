"""A batch's plan, worked out ahead of its commit: where each partition's records start (none
when one skips an offset), its fold (as if every key were new, and exactly for any set of new
keys), and its halves (what a commit isolating a refused record commits one after the other)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from projector.batch import Batch
from projector.fold import epoch_second
from projector.records import ConsumedRecord, Poison
from shared.events import TransactionRecorded
from shared.totals import Totals

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def item(
    tx_id: str, cents: int, second: int, producer: str = "shop-a"
) -> TransactionRecorded | Poison:
    if tx_id == "poison":
        return Poison("not an event", b"{}")
    at = AT + timedelta(seconds=second)
    return TransactionRecorded(uuid.uuid4(), tx_id, Decimal(cents).scaleb(-2), at, AT, producer)


# per partition: its first offset and its items (ids and producers from small sets, so keys repeat)
partitions = st.dictionaries(
    st.integers(0, 5),
    st.tuples(
        st.integers(0, 1000),
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c", "d", "e", "f", "poison"]),
                st.integers(1, 10**6),
                st.integers(0, 130),
                st.sampled_from(["shop-a", "shop-b"]),
            ),
            min_size=1,
            max_size=15,
        ),
    ),
    min_size=1,
)


def batch_of(layout: dict[int, tuple[int, list[tuple[str, int, int, str]]]], seed: int) -> Batch:
    records = [
        ConsumedRecord(partition, start + index, item(*spec))
        for partition, (start, specs) in layout.items()
        for index, spec in enumerate(specs)
    ]
    random.Random(seed).shuffle(records)  # a batch's records come in any order of partitions
    return Batch(records=records)


def naive_fold(batch: Batch, new: set[tuple[str, str]]) -> tuple[dict[object, Totals], int]:
    """Per partition and per (partition, second): the totals of the first occurrence of every
    key in `new`, folded one event at a time in position order; and how many were folded."""
    records = sorted(batch.records, key=lambda r: (r.partition, r.offset))
    totals: dict[object, Totals] = {}
    counted: set[tuple[str, str]] = set()
    for partition, _, item in records:
        if not isinstance(item, TransactionRecorded):
            continue
        key = (item.producer, item.transaction_id)
        if key not in new or key in counted:
            continue
        counted.add(key)
        second = epoch_second(item.occurred_at)
        for bucket in (partition, (partition, second)):
            totals[bucket] = totals.get(bucket, Totals()).merge(Totals.of(item.amount))
    return totals, len(counted)


@given(
    layout=partitions,
    seed=st.integers(),
    new=st.sets(st.tuples(st.sampled_from(["shop-a", "shop-b"]), st.sampled_from("abcdef"))),
)
def test_the_fold_worked_out_ahead_equals_the_fold_of_the_new_keys(
    layout: dict[int, tuple[int, list[tuple[str, int, int, str]]]],
    seed: int,
    new: set[tuple[str, str]],
) -> None:
    batch = batch_of(layout, seed)
    fold = batch.fold()

    assert batch.starts() == {p: start for p, (start, _) in layout.items()}
    keys = set(fold.keys())
    assert len(keys) == len(fold.keys())
    for subset in (keys, keys & new, set()):
        delta, folded = fold.fold_new(subset)
        totals: dict[object, Totals] = dict(delta.partitions.items())
        totals.update(delta.seconds.items())
        assert (totals, len(folded)) == naive_fold(batch, subset)
    if fold.all_new is not None:
        assert fold.all_new == fold.fold_new(keys)


def test_the_fold_is_worked_out_ahead_only_for_distinct_keys() -> None:
    distinct = batch_of({0: (0, [("a", 100, 0, "shop-a"), ("b", 200, 0, "shop-a")])}, seed=1)
    shared = batch_of({0: (0, [("a", 100, 0, "shop-a"), ("a", 200, 0, "shop-b")])}, seed=1)
    repeated = batch_of({0: (0, [("a", 100, 0, "shop-a"), ("a", 200, 0, "shop-a")])}, seed=1)
    assert distinct.fold().all_new is not None
    assert shared.fold().all_new is not None  # one id, two producers: two transactions
    assert repeated.fold().all_new is None


def test_the_first_occurrence_of_each_key_is_kept() -> None:
    records = batch_of(
        {0: (0, [("a", 100, 0, "shop-a"), ("a", 200, 0, "shop-b"), ("a", 300, 0, "shop-a")])},
        seed=1,
    )
    first = records.fold().first
    assert first is not None
    assert (list(first[0]), list(first[2]), list(first[6])) == (
        ["a", "a"],
        [0, 1],
        ["shop-a", "shop-b"],
    )


def test_a_partition_skipping_an_offset_has_no_start() -> None:
    inside = Batch(
        records=[ConsumedRecord(0, 0, item("a", 1, 0)), ConsumedRecord(0, 2, item("b", 1, 0))]
    )
    assert inside.starts() is None
    assert batch_of({0: (5, [("a", 1, 0, "p")]), 1: (0, [("b", 1, 0, "p")])}, 3).starts() == {
        0: 5,
        1: 0,
    }


def test_halves_split_in_position_order_and_keep_the_log_ends() -> None:
    batch = batch_of({0: (3, [("a", 1, 0, "p")] * 3), 1: (0, [("b", 1, 0, "p")] * 2)}, seed=4)
    batch.log_end_offsets = {0: 9, 1: 7}
    first, second = batch.halves()
    assert [(r.partition, r.offset) for r in first.records] == [(0, 3), (0, 4)]
    assert [(r.partition, r.offset) for r in second.records] == [(0, 5), (1, 0), (1, 1)]
    assert first.log_end_offsets == second.log_end_offsets == {0: 9, 1: 7}
    assert (first.starts(), second.starts()) == ({0: 3}, {0: 5, 1: 0})
