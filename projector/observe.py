"""What a commit did, told: the projector's metrics, and a log line for every poison record
and every conflict it stored."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from projector.commit import CommitResult
from projector.conflicts import Conflict
from projector.metrics import ProjectorMetrics
from shared.projection import LONGEST_WINDOW_SECONDS

logger = logging.getLogger(__name__)

LONGEST_WINDOW = timedelta(seconds=LONGEST_WINDOW_SECONDS)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CommitObserver:
    def __init__(self, *, metrics: ProjectorMetrics, topic: str, clock: Clock = utc_now) -> None:
        self._metrics = metrics
        self._topic = topic
        self._clock = clock
        self.folded_total = 0

    def committed(
        self,
        result: CommitResult,
        *,
        version: int,
        records: int,
        seconds: float,
        lag: Mapping[int, int],
    ) -> None:
        """`records` consumed, in `seconds` from decoding to commit; `lag` per partition."""
        metrics = self._metrics
        for partition, behind in lag.items():
            metrics.lag.labels(str(partition)).set(behind)
        horizon = self._clock() - LONGEST_WINDOW
        late = sum(1 for event in result.folded if event.occurred_at < horizon)
        self.folded_total += len(result.folded)
        metrics.events_folded.inc(len(result.folded))
        metrics.duplicates.inc(result.duplicates)
        metrics.conflicts.inc(len(result.conflicts))
        metrics.poison.inc(len(result.poison))
        metrics.refused.inc(result.refused)
        metrics.late.inc(late)
        metrics.batch_size.observe(records)
        metrics.fold_seconds.observe(seconds)
        _log_conflicts(result.conflicts, version=version)
        for partition, offset, poison in result.poison:  # each is stored, so logged, once
            logger.warning(
                "skipped a poison event",
                extra={
                    "topic": self._topic,
                    "partition": partition,
                    "offset": offset,
                    "reason": poison.reason,
                },
            )


def _log_conflicts(conflicts: Iterable[Conflict], *, version: int) -> None:
    for conflict in conflicts:
        first, repeat = conflict.first, conflict.repeat
        logger.warning(
            "conflicting duplicate transaction id: the first occurrence stays counted",
            extra={
                "version": version,
                "producer": first.producer,
                "transaction_id": conflict.transaction_id,
                "counted_partition": first.partition,
                "counted_offset": first.offset,
                "counted_amount": str(first.amount),
                "counted_occurred_at": first.occurred_at.isoformat(),
                "partition": repeat.partition,
                "offset": repeat.offset,
                "amount": str(repeat.amount),
                "occurred_at": repeat.occurred_at.isoformat(),
            },
        )
