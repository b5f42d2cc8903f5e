"""Money is `Decimal` end to end; on the wire it is a string with two fractional digits.

The one home of the amount rule: a transaction's amount is finite, greater than 0, at most
`MAX_AMOUNT` and a whole number of cents. The command API's models, its commands and the event
decoder all ask `amount_violation`, `is_valid_amount` or `in_cents`, which share
`_cents_or_violation`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Literal

CENT = Decimal("0.01")
_MAX_AMOUNT_EXPONENT = 12
MAX_AMOUNT = Decimal(10) ** _MAX_AMOUNT_EXPONENT
MAX_AMOUNT_TEXT = f"10^{_MAX_AMOUNT_EXPONENT}"  # how messages and the API docs write it

AmountViolation = Literal["not_finite", "not_positive", "above_maximum", "sub_cent"]


def amount_violation(amount: Decimal) -> AmountViolation | None:
    """The first part of the amount rule `amount` breaks, or None when it is a valid amount.
    Trailing zeros beyond the second fractional digit do not count: 1.100 is 1.10."""
    checked = _cents_or_violation(amount)
    return checked if isinstance(checked, str) else None


def is_valid_amount(amount: Decimal) -> bool:
    return amount_violation(amount) is None


def in_cents(amount: Decimal) -> Decimal | None:
    """A valid `amount` with exactly two fractional digits, else None (the decoders' path,
    once per item: the rule and the canonical form in one `quantize`)."""
    checked = _cents_or_violation(amount)
    return None if isinstance(checked, str) else checked


def _cents_or_violation(amount: Decimal) -> Decimal | AmountViolation:
    """The amount rule, written once: the first part `amount` breaks, or its cents."""
    if not amount.is_finite():  # first: NaN cannot even be compared
        return "not_finite"
    if amount <= 0:
        return "not_positive"
    if amount > MAX_AMOUNT:
        return "above_maximum"
    cents = amount.quantize(CENT)
    return cents if cents == amount else "sub_cent"


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
