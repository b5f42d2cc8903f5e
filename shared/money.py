"""Money is `Decimal` end to end; on the wire it is a string with two fractional digits."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")


def to_cents_string(amount: Decimal) -> str:
    """Format an exact amount (or a rounded average) as a decimal string, half-even."""
    return str(amount.quantize(CENT, rounding=ROUND_HALF_EVEN))


def average(total: Decimal, count: int) -> Decimal | None:
    if count == 0:
        return None
    return (total / Decimal(count)).quantize(CENT, rounding=ROUND_HALF_EVEN)
