"""`Totals` is a commutative monoid over exact decimals, and `Delta.of` (what a batch adds)
equals a naive fold of one event at a time, per partition and per partition and bucket."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from projector.fold import Delta, epoch_second
from shared.totals import Totals

amounts = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal(10**12), places=2, allow_nan=False
)
events = st.lists(
    st.tuples(st.integers(0, 5), st.integers(1_700_000_000, 1_700_000_300), amounts), max_size=80
)


def naive(amounts: Iterable[Decimal]) -> Totals:
    """One event at a time, by the definition of each figure."""
    values = list(amounts)
    if not values:
        return Totals()
    total = Decimal(0)
    for value in values:
        total += value
    return Totals(len(values), total, max(values), min(values))


@given(events)
def test_delta_equals_a_naive_fold_per_partition_second_and_minute(
    batch: list[tuple[int, int, Decimal]],
) -> None:
    by_second: dict[tuple[int, int], list[Decimal]] = {}
    for partition, second, amount in batch:
        by_second.setdefault((partition, second), []).append(amount)
    delta = Delta.of(by_second)

    def expected(key: object) -> dict[object, Totals]:
        keys = {key(p, s) for p, s, _ in batch}  # type: ignore[operator]
        return {k: naive(a for p, s, a in batch if key(p, s) == k) for k in keys}  # type: ignore[operator]

    assert delta.partitions == expected(lambda p, s: p)
    assert delta.seconds == expected(lambda p, s: (p, s))
    assert delta.minutes == expected(lambda p, s: (p, s // 60))


@given(st.lists(amounts, max_size=60), st.randoms())
def test_any_split_and_order_merges_to_the_same_totals(values: list[Decimal], rnd: object) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    cut = rnd.randint(0, len(shuffled))  # type: ignore[attr-defined]
    merged = Totals.of_amounts(shuffled[cut:]).merge(Totals.of_amounts(shuffled[:cut]))
    assert merged == Totals.of_amounts(values) == naive(values)


@given(amounts, amounts, amounts)
def test_merge_is_associative_and_commutative(a: Decimal, b: Decimal, c: Decimal) -> None:
    x, y, z = Totals.of(a), Totals.of(b), Totals.of(c)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(y) == y.merge(x)


@given(amounts)
def test_empty_is_the_identity(a: Decimal) -> None:
    assert Totals().merge(Totals.of(a)) == Totals.of(a) == Totals.of(a).merge(Totals())


def test_sums_stay_exact_past_the_default_decimal_precision() -> None:
    big = Decimal("999999999999.99")
    totals = Totals.of_amounts([Decimal("0.10"), Decimal("0.20")] + [big] * 3)
    assert str(totals.sum) == "3000000000000.27"
    huge = Totals(1, Decimal("1" + "0" * 30 + ".01"), big, big)  # 33 digits: past 28
    assert str(huge.merge(Totals.of(Decimal("0.01"))).sum) == "1000000000000000000000000000000.02"


def test_delta_puts_events_in_second_and_minute_buckets_of_their_partition() -> None:
    t0 = datetime(2026, 11, 26, 12, 0, 59, 999_000, tzinfo=UTC)
    t1 = datetime(2026, 11, 26, 12, 1, 0, tzinfo=UTC)
    s0, s1 = epoch_second(t0), epoch_second(t1)
    assert s1 == s0 + 1
    delta = Delta.of(
        {
            (3, s0): [Decimal("1.50")],
            (3, s1): [Decimal("2.50")],
            (4, s1): [Decimal("4.00")],
        }
    )
    assert delta.seconds == {
        (3, s0): Totals.of(Decimal("1.50")),
        (3, s1): Totals.of(Decimal("2.50")),
        (4, s1): Totals.of(Decimal("4.00")),
    }
    assert delta.minutes == {
        (3, s0 // 60): Totals.of(Decimal("1.50")),
        (3, s1 // 60): Totals.of(Decimal("2.50")),
        (4, s1 // 60): Totals.of(Decimal("4.00")),
    }
    assert delta.partitions[3] == Totals(2, Decimal("4.00"), Decimal("2.50"), Decimal("1.50"))
