"""The validation rules of `POST /transactions`, as a table of bodies and expected answers.

Bodies are raw JSON text on purpose: exact number parsing is part of what is tested. The app
runs in-process with an in-memory log and a fixed clock (NOW = 2026-11-26T12:00:00Z, skew 5 s).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from command_api import models
from command_api.decoding import parse_exact_json, validate
from command_api.models import TransactionRequest, ValidationContext
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.unit.command_kit import NOW, bearer, client_for, make_app

TS = '"2026-11-26T11:00:00Z"'


@dataclass(frozen=True)
class Row:
    body: str
    status: int
    field: str | None = None  # the failing field (422), or None
    code: str | None = None  # the failing rule (422)
    amount: str | None = None  # the event's amount string (201)


def amount(text: str) -> str:
    return f'{{"amount": {text}, "timestamp": {TS}}}'


def stamp(text: str) -> str:
    return f'{{"amount": 1, "timestamp": {text}}}'


def tx_id(text: str) -> str:
    return f'{{"amount": 1, "timestamp": {TS}, "transaction_id": {text}}}'


ROWS: dict[str, Row] = {
    # --- valid amounts: exact, canonical two-decimal strings in the event
    "number": Row(amount("12.34"), 201, amount="12.34"),
    "decimal string": Row(amount('"12.34"'), 201, amount="12.34"),
    "0.1 is exactly 0.1": Row(amount("0.1"), 201, amount="0.10"),
    "one cent": Row(amount("0.01"), 201, amount="0.01"),
    "the maximum 10^12": Row(amount("1000000000000"), 201, amount="1000000000000.00"),
    "max with cents": Row(amount("999999999999.99"), 201, amount="999999999999.99"),
    "integer": Row(amount("12"), 201, amount="12.00"),
    "exponent": Row(amount("1.5e3"), 201, amount="1500.00"),
    "trailing zeros": Row(amount("1.100"), 201, amount="1.10"),
    "string with trailing zeros": Row(amount('"1.100"'), 201, amount="1.10"),
    # --- invalid amounts
    "zero": Row(amount("0"), 422, "amount", "greater_than"),
    "negative": Row(amount("-5"), 422, "amount", "greater_than"),
    "negative zero": Row(amount("-0.0"), 422, "amount", "greater_than"),
    "negative string": Row(amount('"-0.01"'), 422, "amount", "greater_than"),
    "3 decimals": Row(amount("12.345"), 422, "amount", "decimal_max_places"),
    "sub-cent": Row(amount("0.001"), 422, "amount", "decimal_max_places"),
    # the exact value of the double nearest to 0.1: a float parser would accept it as 0.1
    "float artefact": Row(
        amount("0.1000000000000000055511151231257827"), 422, "amount", "decimal_max_places"
    ),
    "above 10^12": Row(amount("1000000000000.01"), 422, "amount", "less_than_equal"),
    "huge 1e400": Row(amount("1e400"), 422, "amount", "less_than_equal"),
    # a string holds a plain decimal: the OpenAPI pattern states exactly which are amounts
    "string with exponent": Row(amount('"25E-1"'), 422, "amount", "amount_type"),
    "string beyond Decimal's exponent": Row(
        amount('"1e999999999999999999999"'), 422, "amount", "amount_type"
    ),
    "tiny 1e-400": Row(amount("1e-400"), 422, "amount", "decimal_max_places"),
    "NaN string": Row(amount('"NaN"'), 422, "amount", "amount_type"),
    "Infinity string": Row(amount('"Infinity"'), 422, "amount", "amount_type"),
    "boolean": Row(amount("true"), 422, "amount", "amount_type"),
    "null": Row(amount("null"), 422, "amount", "amount_type"),
    "comma decimal": Row(amount('"12,34"'), 422, "amount", "amount_type"),
    "padded string": Row(amount('" 12.34"'), 422, "amount", "amount_type"),
    "hex string": Row(amount('"0x10"'), 422, "amount", "amount_type"),
    "object": Row(amount('{"value": 1}'), 422, "amount", "amount_type"),
    "array": Row(amount("[1]"), 422, "amount", "amount_type"),
    "missing amount": Row(f'{{"timestamp": {TS}}}', 422, "amount", "missing"),
    "NaN literal": Row(amount("NaN"), 400),
    "Infinity literal": Row(amount("Infinity"), 400),
    "-Infinity literal": Row(amount("-Infinity"), 400),
    # --- timestamps
    "offset +02:00": Row(stamp('"2026-11-26T13:00:00+02:00"'), 201, amount="1.00"),
    "lower-case t and z": Row(stamp('"2026-11-26t11:00:00z"'), 201, amount="1.00"),
    "fractional seconds": Row(stamp('"2026-11-26T11:00:00.123456Z"'), 201, amount="1.00"),
    "very old": Row(stamp('"1970-01-01T00:00:00Z"'), 201, amount="1.00"),
    "exactly at the skew": Row(stamp('"2026-11-26T12:00:05Z"'), 201, amount="1.00"),
    "just past the skew": Row(
        stamp('"2026-11-26T12:00:05.001Z"'), 422, "timestamp", "timestamp_in_future"
    ),
    "a minute ahead": Row(stamp('"2026-11-26T12:01:00Z"'), 422, "timestamp", "timestamp_in_future"),
    "ahead in another offset": Row(
        stamp('"2026-11-26T14:01:00+02:00"'), 422, "timestamp", "timestamp_in_future"
    ),
    "naive": Row(stamp('"2026-11-26T11:00:00"'), 422, "timestamp", "timezone_aware"),
    "date only": Row(stamp('"2026-11-26"'), 422, "timestamp", "datetime_format"),
    "offset without colon": Row(
        stamp('"2026-11-26T11:00:00+0200"'), 422, "timestamp", "datetime_format"
    ),
    "unix seconds number": Row(stamp("1700000000"), 422, "timestamp", "datetime_type"),
    "unix seconds string": Row(stamp('"1700000000"'), 422, "timestamp", "datetime_format"),
    "month 13": Row(
        stamp('"2026-13-01T00:00:00Z"'), 422, "timestamp", "datetime_from_date_parsing"
    ),
    "out of range in UTC": Row(
        stamp('"0001-01-01T00:00:00+01:00"'), 422, "timestamp", "datetime_range"
    ),
    "missing timestamp": Row('{"amount": 1}', 422, "timestamp", "missing"),
    # --- transaction ids
    "id allowed characters": Row(tx_id('"Ab9._:-x"'), 201, amount="1.00"),
    "id 64 chars": Row(tx_id(f'"{"a" * 64}"'), 201, amount="1.00"),
    "id null is generated": Row(tx_id("null"), 201, amount="1.00"),
    "id empty": Row(tx_id('""'), 422, "transaction_id", "string_too_short"),
    "id 65 chars": Row(tx_id(f'"{"a" * 65}"'), 422, "transaction_id", "string_too_long"),
    "id with space": Row(tx_id('"a b"'), 422, "transaction_id", "string_pattern_mismatch"),
    "id with slash": Row(tx_id('"a/b"'), 422, "transaction_id", "string_pattern_mismatch"),
    "id non-ascii": Row(tx_id('"caf\\u00e9"'), 422, "transaction_id", "string_pattern_mismatch"),
    "id trailing newline": Row(tx_id('"abc\\n"'), 422, "transaction_id", "string_pattern_mismatch"),
    "id number": Row(tx_id("123"), 422, "transaction_id", "string_type"),
    # --- shape of the body
    "unknown field": Row(
        f'{{"amount": 1, "timestamp": {TS}, "currency": "EUR"}}', 422, "currency", "extra_forbidden"
    ),
    "array body": Row("[]", 422, "", "model_type"),
    "string body": Row('"12.34"', 422, "", "model_type"),
    "duplicate key": Row(f'{{"amount": 1, "amount": 2, "timestamp": {TS}}}', 400),
    "duplicate key spelled with an escape": Row(
        f'{{"amount": 1, "\\u0061mount": 2, "timestamp": {TS}}}', 400
    ),
    "duplicate id, null then a string": Row(
        f'{{"amount": 1, "timestamp": {TS}, "transaction_id": null, "transaction_id": "a"}}', 400
    ),
    "duplicate timestamp": Row(f'{{"amount": "1", "timestamp": "x", "timestamp": {TS}}}', 400),
    "empty body": Row("", 400),
    "truncated JSON": Row('{"amount": 1', 400),
    "trailing garbage": Row(amount("1") + " x", 400),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_body_table(row: Row) -> None:
    log = InMemoryEventPublisher()
    async with client_for(make_app(log)) as client:
        response = await client.post("/transactions", content=row.body, headers=bearer())

    assert response.status_code == row.status, response.text
    if row.status == 201:
        [event] = log.events
        assert str(event.amount) == row.amount
        assert event.occurred_at.utcoffset() == timedelta(0)
        return
    assert response.headers["content-type"] == "application/problem+json"
    assert log.events == []  # nothing reaches the log
    problem = response.json()
    assert problem["status"] == row.status
    if row.status == 422:  # each row breaks exactly one rule, so it cannot pass by another
        failures = [(error["field"], error["code"]) for error in problem["errors"]]
        assert failures == [(row.field, row.code)], problem["errors"]


def _custom_error_codes() -> set[str]:
    """Every `PydanticCustomError("<code>", ...)` that command_api/models.py can raise."""
    tree = ast.parse(Path(models.__file__).read_text(encoding="utf-8"))
    return {
        str(node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "PydanticCustomError"
        and isinstance(node.args[0], ast.Constant)
    }


# Rules of the batch body only: test_command_api.py covers them.
BATCH_ONLY = {"duplicate_transaction_id"}


def test_every_rule_of_our_own_has_a_row() -> None:
    codes = _custom_error_codes()
    assert {"timestamp_in_future", *BATCH_ONLY} <= codes  # the parse found them
    assert codes - BATCH_ONLY <= {row.code for row in ROWS.values()}


async def test_every_failing_field_is_reported_at_once() -> None:
    body = '{"amount": -1, "timestamp": "2026-11-26T11:00:00", "transaction_id": "a b", "x": 1}'
    async with client_for(make_app(InMemoryEventPublisher())) as client:
        response = await client.post("/transactions", content=body, headers=bearer())
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"amount", "timestamp", "transaction_id", "x"}


def test_offsets_are_converted_to_utc() -> None:
    payload = parse_exact_json(b'{"amount": 1, "timestamp": "2026-11-26T13:30:00+02:00"}')
    request = validate(TransactionRequest, payload, context=_context())
    assert request.timestamp.isoformat() == "2026-11-26T11:30:00+00:00"


def test_validation_needs_the_clock() -> None:
    payload = parse_exact_json(b'{"amount": 1, "timestamp": "2026-11-26T13:30:00Z"}')
    with pytest.raises(TypeError, match="ValidationContext"):
        TransactionRequest.model_validate(payload)


def _context() -> ValidationContext:
    return ValidationContext(now=NOW, max_clock_skew=timedelta(seconds=5))


cents = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal(10) ** 12, places=2, allow_nan=False
)


@given(value=cents, as_string=st.booleans())
def test_any_amount_in_cents_round_trips_exactly(value: Decimal, as_string: bool) -> None:
    text = json.dumps(str(value)) if as_string else str(value)
    payload = parse_exact_json(f'{{"amount": {text}, "timestamp": {TS}}}'.encode())
    request = validate(TransactionRequest, payload, context=_context())
    assert request.amount == value
    assert request.amount.as_tuple().exponent == -2


@given(value=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10) ** 12, allow_nan=False))
def test_amounts_with_more_than_two_places_are_refused(value: Decimal) -> None:
    if value == value.quantize(Decimal("0.01")):
        return  # a whole number of cents: valid, covered above
    payload = parse_exact_json(f'{{"amount": {value}, "timestamp": {TS}}}'.encode())
    with pytest.raises(RequestValidationError, match="at most 2 fractional digits"):
        validate(TransactionRequest, payload, context=_context())
