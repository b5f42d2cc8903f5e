"""Stats use cases: all-time, sliding window, read-your-writes. No HTTP, no driver here."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from query_api.consistency import ConsistentReads
from query_api.ports import (
    Clock,
    PartitionPosition,
    ProjectionReader,
    Snapshot,
    StatsMetrics,
)
from query_api.windows import WindowPlan, plan_window
from shared.money import average


@dataclass(frozen=True, slots=True)
class StatsView:
    count: int
    total: Decimal
    average: Decimal | None
    maximum: Decimal | None
    minimum: Decimal | None
    version: int
    positions: tuple[PartitionPosition, ...]
    read_at: float  # epoch seconds, from the injected clock
    window: WindowPlan | None


class StatsService:
    def __init__(
        self,
        *,
        reader: ProjectionReader,
        consistent: ConsistentReads,
        clock: Clock,
        metrics: StatsMetrics,
        window_allowance: int,
    ) -> None:
        self._reader = reader
        self._consistent = consistent
        self._clock = clock
        self._metrics = metrics
        self._allowance = window_allowance

    async def stats(
        self,
        *,
        window_seconds: int | None = None,
        consistency_token: str | None = None,
        wait_ms: int | None = None,
    ) -> StatsView:
        """All-time stats, or over the last `window_seconds`; with a consistency token, only
        once the projection covers it (waiting up to `wait_ms`)."""

        async def read() -> tuple[Snapshot, WindowPlan | None, float]:
            now = self._clock()
            if window_seconds is None:
                return await self._reader.all_time(), None, now
            plan = plan_window(now=now, seconds=window_seconds, allowance=self._allowance)
            return await self._reader.window(plan.buckets), plan, now

        if consistency_token is None:
            self._metrics.stats_request("all_time" if window_seconds is None else "window")
            snapshot, plan, now = await read()
        else:
            wait = self._consistent.accept(consistency_token, wait_ms)
            self._metrics.stats_request("consistency")
            snapshot, plan, now = await self._consistent.read(
                wait, read, lambda result: result[0].position
            )
        return _view(snapshot, plan, now)


def _view(snapshot: Snapshot, plan: WindowPlan | None, now: float) -> StatsView:
    totals = snapshot.totals
    return StatsView(
        count=totals.count,
        total=totals.sum,
        average=average(totals.sum, totals.count),
        maximum=totals.max,
        minimum=totals.min,
        version=snapshot.version,
        positions=snapshot.positions,
        read_at=now,
        window=plan,
    )
