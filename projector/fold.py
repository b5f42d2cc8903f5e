"""The pure fold: what one batch of new events adds to the projection. No I/O.

Per partition and per event-time bucket (one second, one minute) the batch adds `Totals`,
which merge in any order (see `shared.totals`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from shared.projection import SECONDS_PER_MINUTE
from shared.totals import Totals


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
        """Totals of amounts grouped by partition and by event-time second."""
        seconds = {second: Totals.of_amounts(amounts) for second, amounts in by_second.items()}
        minutes: dict[int, Totals] = {}
        for second, totals in seconds.items():
            minute = second // SECONDS_PER_MINUTE
            minutes[minute] = minutes.get(minute, Totals()).merge(totals)
        return Delta(
            partitions={p: Totals.of_amounts(amounts) for p, amounts in by_partition.items()},
            seconds=seconds,
            minutes=minutes,
        )
