"""Response DTOs of `GET /stats`. Money is a decimal string with exactly two fractional
digits; it is never a JSON number."""

from __future__ import annotations

from decimal import Decimal, localcontext

from pydantic import BaseModel, ConfigDict, Field

from query_api.as_of import AsOf
from query_api.stats.service import StatsView
from shared.money import to_cents_string


def _cents(amount: Decimal | None) -> str | None:
    if amount is None:
        return None
    with localcontext() as context:  # room for every digit: quantize never rounds a sum
        context.prec = max(context.prec, amount.adjusted() + 4)
        return to_cents_string(amount)


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
        return cls(
            count=view.count,
            sum=_cents(view.total) or "0.00",
            avg=_cents(view.average),
            max=_cents(view.maximum),
            min=_cents(view.minimum),
            as_of=AsOf.of(view.version, view.positions, view.read_at, view.window),
        )
