"""`as_of`: which state of the projection answered a read. Every answer of the query API
carries it (the stats, a transaction's fate, its not-found problem), so it lives here rather
than in one feature."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from query_api.ports import PartitionPosition
from query_api.windows import WindowPlan


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class WindowOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    seconds: int = Field(description="The requested window length N")
    start: datetime = Field(description="First instant counted: floor(now) - N + 1 (UTC)")
    end: datetime = Field(
        description="Exclusive end of what a bucket read may contain: the end of the minute "
        "holding now + the clock-skew allowance (future-stamped events are included)"
    )

    @classmethod
    def from_plan(cls, plan: WindowPlan) -> WindowOut:
        return cls(
            seconds=plan.seconds,
            start=_utc(plan.start_second),
            end=_utc(plan.last_second + 1),
        )


class AsOf(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = Field(description="Projection version that answered")
    offsets: dict[int, int] = Field(
        description="Per partition, the next offset to fold: offsets below it are included"
    )
    lag: dict[int, int] = Field(
        description="Per partition, events in the log not folded yet when last observed"
    )
    total_lag: int
    server_time: datetime = Field(description="When the server read the projection (UTC)")
    window: WindowOut | None = Field(default=None, description="Window bounds, if any")

    @classmethod
    def of(
        cls,
        version: int,
        positions: tuple[PartitionPosition, ...],
        read_at: float,
        window: WindowPlan | None = None,
    ) -> AsOf:
        lag = {p.partition: p.lag for p in positions}
        return cls(
            version=version,
            offsets={p.partition: p.next_offset for p in positions},
            lag=lag,
            total_lag=sum(lag.values()),
            server_time=_utc(read_at),
            window=None if window is None else WindowOut.from_plan(window),
        )
