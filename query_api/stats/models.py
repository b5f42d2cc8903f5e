"""Response DTOs of the query API. Money is a decimal string with exactly two fractional
digits; it is never a JSON number."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext

from pydantic import BaseModel, ConfigDict, Field

from query_api.stats.service import StatsView
from query_api.windows import WindowPlan
from shared.money import to_cents_string


def _cents(amount: Decimal | None) -> str | None:
    if amount is None:
        return None
    with localcontext() as context:  # room for every digit: quantize never rounds a sum
        context.prec = max(context.prec, amount.adjusted() + 4)
        return to_cents_string(amount)


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


class StatsResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    sum: str = Field(examples=["1234.50"])
    avg: str | None = Field(description="sum / count rounded half-even; null when empty")
    max: str | None
    min: str | None
    as_of: AsOf

    @classmethod
    def from_view(cls, view: StatsView) -> StatsResponse:
        lag = {p.partition: p.lag for p in view.positions}
        as_of = AsOf(
            version=view.version,
            offsets={p.partition: p.next_offset for p in view.positions},
            lag=lag,
            total_lag=sum(lag.values()),
            server_time=_utc(view.read_at),
            window=None if view.window is None else WindowOut.from_plan(view.window),
        )
        return cls(
            count=view.count,
            sum=_cents(view.total) or "0.00",
            avg=_cents(view.average),
            max=_cents(view.maximum),
            min=_cents(view.minimum),
            as_of=as_of,
        )
