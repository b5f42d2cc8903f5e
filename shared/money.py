"""Money is `Decimal` end to end; on the wire it is a string with two fractional digits."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

CENT = Decimal("0.01")


def to_cents_string(amount: Decimal) -> str:
    """Format an exact amount (or a rounded average) as a decimal string, half-even."""
    return str(amount.quantize(CENT, rounding=ROUND_HALF_EVEN))


def average(total: Decimal, count: int) -> Decimal | None:
    """`total / count` rounded half-even to cents, exactly: no intermediate Decimal rounding,
    so no double rounding however many digits the sum has."""
    if count == 0:
        return None
    cents = round(Fraction(total) * 100 / count)  # round() of a Fraction is half-even
    return Decimal(f"{cents}E-2")
