"""The pure fold: events in, totals out. No I/O.

`Totals` is a commutative monoid (count and sum add, max and min take the extreme), so
partitions, batches and projector instances can fold in any order and merge to the same
result. Buckets are keyed by event time, at one-second and one-minute resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from shared.projection import SECONDS_PER_MINUTE


@dataclass(frozen=True, slots=True)
class Totals:
    count: int = 0
    sum: Decimal = Decimal(0)
    max: Decimal | None = None
    min: Decimal | None = None

    @staticmethod
    def of(amount: Decimal) -> Totals:
        return Totals(1, amount, amount, amount)

    def merge(self, other: Totals) -> Totals:
        return Totals(
            count=self.count + other.count,
            sum=self.sum + other.sum,
            max=_extreme(max, self.max, other.max),
            min=_extreme(min, self.min, other.min),
        )


EMPTY = Totals()


def _extreme(
    pick: Callable[[Decimal, Decimal], Decimal], a: Decimal | None, b: Decimal | None
) -> Decimal | None:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


def fold(amounts: Iterable[Decimal]) -> Totals:
    totals = EMPTY
    for amount in amounts:
        totals = totals.merge(Totals.of(amount))
    return totals


def epoch_second(moment: datetime) -> int:
    return math.floor(moment.timestamp())  # the same floor as `int(t // 1)`, cheaper per event


@dataclass(slots=True)
class Delta:
    """What one batch adds: per-partition totals and per-bucket totals."""

    partitions: dict[int, Totals] = field(default_factory=dict)
    seconds: dict[int, Totals] = field(default_factory=dict)
    minutes: dict[int, Totals] = field(default_factory=dict)

    @staticmethod
    def of(
        by_partition: Mapping[int, Sequence[Decimal]], by_second: Mapping[int, Sequence[Decimal]]
    ) -> Delta:
        """Totals of amounts grouped by partition and by event-time second (C-speed builtins
        per group instead of one merge per event)."""
        seconds = {second: _totals_of(amounts) for second, amounts in by_second.items()}
        minutes: dict[int, Totals] = {}
        for second, totals in seconds.items():
            minute = second // SECONDS_PER_MINUTE
            minutes[minute] = minutes.get(minute, EMPTY).merge(totals)
        return Delta(
            partitions={p: _totals_of(amounts) for p, amounts in by_partition.items()},
            seconds=seconds,
            minutes=minutes,
        )


def _totals_of(amounts: Sequence[Decimal]) -> Totals:
    if not amounts:
        return EMPTY
    return Totals(len(amounts), sum(amounts, Decimal(0)), max(amounts), min(amounts))
