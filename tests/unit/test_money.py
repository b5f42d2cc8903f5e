"""The amount rule's one home (shared.money), and the three places that enforce it agreeing
with it: the command API's request model, its command, and the event decoder."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from command_api.models import TransactionRequest, ValidationContext
from command_api.services import RecordTransaction
from shared.events import EventDecodeError, TransactionRecorded, deserialize, serialize
from shared.money import (
    CENT,
    MAX_AMOUNT,
    AmountViolation,
    amount_violation,
    in_cents,
    is_valid_amount,
)

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)

VIOLATIONS: dict[str, tuple[str, AmountViolation | None]] = {
    "one cent": ("0.01", None),
    "the maximum": ("1000000000000", None),
    "trailing zeros": ("1.100", None),
    "exponent": ("1E+2", None),
    "NaN": ("NaN", "not_finite"),
    "infinity": ("Infinity", "not_finite"),
    "zero": ("0", "not_positive"),
    "negative sub-cent": ("-0.001", "not_positive"),
    "above the maximum": ("1000000000000.01", "above_maximum"),
    "huge sub-cent": ("1000000000000.001", "above_maximum"),
    "sub-cent": ("0.001", "sub_cent"),
    "tiny": ("1E-400", "sub_cent"),
}


@pytest.mark.parametrize(("text", "violation"), VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_the_rule_names_the_first_part_an_amount_breaks(
    text: str, violation: AmountViolation | None
) -> None:
    assert amount_violation(Decimal(text)) == violation
    assert is_valid_amount(Decimal(text)) is (violation is None)


def _model_accepts(amount: Decimal) -> bool:
    context = ValidationContext(now=NOW, max_clock_skew=timedelta(seconds=5))
    try:
        TransactionRequest.model_validate(
            {"amount": amount, "timestamp": "2026-11-26T11:00:00Z"}, context=context
        )
    except ValidationError:
        return False
    return True


def _command_accepts(amount: Decimal) -> bool:
    try:
        RecordTransaction(amount=amount, occurred_at=NOW)
    except ValueError:
        return False
    return True


def _decoder_accepts(amount: Decimal) -> bool:
    event = TransactionRecorded(
        event_id=uuid.UUID(int=1),
        transaction_id="t-1",
        amount=amount,
        occurred_at=NOW,
        recorded_at=NOW,
        producer="p",
    )
    try:
        deserialize(serialize(event))
    except EventDecodeError:
        return False
    return True


AMOUNTS = st.one_of(
    st.decimals(min_value=-1, max_value=MAX_AMOUNT + 1, places=2, allow_nan=False),
    st.decimals(min_value=-1, max_value=MAX_AMOUNT + 1, places=3, allow_nan=False),
    st.sampled_from([Decimal(0), MAX_AMOUNT, MAX_AMOUNT + Decimal("0.01"), Decimal("0.01")]),
)


@given(st.one_of(AMOUNTS, st.sampled_from([Decimal("NaN"), Decimal("Infinity")])))
def test_in_cents_is_the_rule_and_the_two_decimal_form(amount: Decimal) -> None:
    cents = in_cents(amount)
    assert (cents is not None) is is_valid_amount(amount)
    if cents is not None:
        assert cents == amount
        assert cents.as_tuple().exponent == -2


@given(AMOUNTS)
def test_the_model_and_the_command_enforce_exactly_the_rule(amount: Decimal) -> None:
    assert _model_accepts(amount) is is_valid_amount(amount)
    assert _command_accepts(amount) is is_valid_amount(amount)


@given(AMOUNTS)
def test_the_event_decoder_enforces_the_rule_on_what_the_serializer_writes(
    amount: Decimal,
) -> None:
    # The serializer writes two decimals, so sub-cent amounts cannot reach the decoder.
    written = amount.quantize(CENT)
    assert _decoder_accepts(written) is is_valid_amount(written)
