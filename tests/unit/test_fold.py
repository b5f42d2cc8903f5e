"""The fold is a commutative monoid over exact decimals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from projector.fold import EMPTY, Delta, Totals, epoch_second, fold

amounts = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal(10**12), places=2, allow_nan=False
)


@given(st.lists(amounts, max_size=60), st.randoms())
def test_any_split_and_order_folds_to_the_same_totals(values: list[Decimal], rnd: object) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    cut = rnd.randint(0, len(shuffled))  # type: ignore[attr-defined]
    merged = fold(shuffled[cut:]).merge(fold(shuffled[:cut]))
    assert merged == fold(values)
    if values:
        assert merged == Totals(len(values), sum(values, Decimal(0)), max(values), min(values))


@given(amounts, amounts, amounts)
def test_merge_is_associative_and_commutative(a: Decimal, b: Decimal, c: Decimal) -> None:
    x, y, z = Totals.of(a), Totals.of(b), Totals.of(c)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(y) == y.merge(x)


@given(amounts)
def test_empty_is_the_identity(a: Decimal) -> None:
    assert EMPTY.merge(Totals.of(a)) == Totals.of(a) == Totals.of(a).merge(EMPTY)


def test_sums_stay_exact_at_every_scale() -> None:
    totals = fold([Decimal("0.10"), Decimal("0.20")] + [Decimal("999999999999.99")] * 3)
    assert totals.sum == Decimal("2999999999999.97") + Decimal("0.30")
    assert str(totals.sum) == "3000000000000.27"


def test_delta_puts_events_in_second_and_minute_buckets() -> None:
    t0 = datetime(2026, 11, 26, 12, 0, 59, 999_000, tzinfo=UTC)
    t1 = datetime(2026, 11, 26, 12, 1, 0, tzinfo=UTC)
    s0, s1 = epoch_second(t0), epoch_second(t1)
    assert s1 == s0 + 1
    delta = Delta.of(
        {3: [Decimal("1.50"), Decimal("2.50")], 4: [Decimal("4.00")]},
        {s0: [Decimal("1.50")], s1: [Decimal("2.50"), Decimal("4.00")]},
    )
    assert delta.seconds == {
        s0: Totals.of(Decimal("1.50")),
        s1: Totals(2, Decimal("6.50"), Decimal("4.00"), Decimal("2.50")),
    }
    assert delta.minutes == {s0 // 60: Totals.of(Decimal("1.50")), s1 // 60: delta.seconds[s1]}
    assert delta.partitions[3] == Totals(2, Decimal("4.00"), Decimal("2.50"), Decimal("1.50"))
