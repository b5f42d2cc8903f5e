"""`Totals`: count, sum, max and min of a set of transactions, the projection's one value.

A commutative monoid (counts and sums add, max of max, min of min; the empty `Totals()` is
the identity), so partitions, batches, buckets and projector instances fold in any order and
merge to the same result. Sums are exact at any size, like PostgreSQL's `numeric`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import MAX_PREC, Context, Decimal, localcontext
from typing import TypeVar

EXACT = Context(prec=MAX_PREC)
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Totals:
    count: int = 0
    sum: Decimal = Decimal(0)
    max: Decimal | None = None
    min: Decimal | None = None

    @staticmethod
    def of(amount: Decimal) -> Totals:
        return Totals(1, amount, amount, amount)

    @staticmethod
    def of_amounts(amounts: Sequence[Decimal]) -> Totals:
        """The totals of many amounts at once (C-speed builtins, not one merge per amount)."""
        return Totals.of_groups({None: amounts})[None]

    @staticmethod
    def of_groups(groups: Mapping[K, Sequence[Decimal]]) -> dict[K, Totals]:
        """The totals of each group of amounts (in one exact decimal context)."""
        with localcontext(EXACT):
            return {
                key: Totals(len(amounts), sum(amounts, Decimal(0)), max(amounts), min(amounts))
                if amounts
                else Totals()
                for key, amounts in groups.items()
            }

    def merge(self, other: Totals) -> Totals:
        return Totals(
            count=self.count + other.count,
            sum=EXACT.add(self.sum, other.sum),
            max=_extreme(max, self.max, other.max),
            min=_extreme(min, self.min, other.min),
        )


def _extreme(
    pick: Callable[[Decimal, Decimal], Decimal], a: Decimal | None, b: Decimal | None
) -> Decimal | None:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)
