"""The event contract: `TransactionRecorded` v1 on the wire, and what consumers refuse."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events import (
    EVENT_TYPE,
    SCHEMA_VERSION,
    EventDecodeError,
    TransactionRecorded,
    deserialize,
    event_headers,
    is_valid_producer,
    serialize,
    serialize_columns,
)

EVENT_ID = uuid.UUID("8d3f0c3e-1b7a-4b8e-9f6e-0a1b2c3d4e5f")


def event(**overrides: Any) -> TransactionRecorded:
    values: dict[str, Any] = {
        "event_id": EVENT_ID,
        "transaction_id": "order-1",
        "amount": Decimal("12.30"),
        "occurred_at": datetime(2026, 11, 26, 13, 0, tzinfo=timezone(timedelta(hours=1))),
        "recorded_at": datetime(2026, 11, 26, 12, 0, 1, 250000, tzinfo=UTC),
        "producer": "shop-42",
    }
    values.update(overrides)
    return TransactionRecorded(**values)


def test_the_wire_format() -> None:
    assert json.loads(serialize(event())) == {
        "event_id": str(EVENT_ID),
        "event_type": "TransactionRecorded",
        "schema_version": 1,
        "transaction_id": "order-1",
        "amount": "12.30",
        "occurred_at": "2026-11-26T12:00:00Z",
        "recorded_at": "2026-11-26T12:00:01.250000Z",
        "producer": "shop-42",
    }


def test_the_amount_is_a_string_never_a_float() -> None:
    raw = serialize(event(amount=Decimal("0.10")))
    assert b'"amount":"0.10"' in raw


def test_key_and_headers() -> None:
    assert event().key == b"order-1"
    assert event_headers() == [
        ("event_type", EVENT_TYPE.encode()),
        ("schema_version", str(SCHEMA_VERSION).encode()),
    ]


def test_round_trip() -> None:
    original = event()
    decoded = deserialize(serialize(original))
    assert decoded == original
    assert decoded.occurred_at.tzinfo == UTC


def test_events_are_immutable() -> None:
    with pytest.raises(AttributeError):
        event().amount = Decimal(1)  # type: ignore[misc]


def _raw(**changes: Any) -> bytes:
    body = json.loads(serialize(event()))
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return json.dumps(body).encode()


POISON: dict[str, bytes | None] = {
    "empty message": None,
    "not JSON": b"\x00\x01garbage",
    "not an object": b"[1, 2]",
    "unknown type": _raw(event_type="TransactionVoided"),
    "unknown version": _raw(schema_version=2),
    "version as string": _raw(schema_version="1"),
    "no event id": _raw(event_id=...),
    "bad event id": _raw(event_id="not-a-uuid"),
    "no transaction id": _raw(transaction_id=...),
    "amount as float": _raw(amount=12.3),
    "amount not decimal": _raw(amount="twelve"),
    "negative amount": _raw(amount="-1.00"),
    "zero amount": _raw(amount="0.00"),
    "three decimals": _raw(amount="1.005"),
    "NaN amount": _raw(amount="NaN"),
    "naive timestamp": _raw(occurred_at="2026-11-26T12:00:00"),
    "garbage timestamp": _raw(recorded_at="yesterday"),
    "no producer": _raw(producer=...),
    "version as boolean": _raw(schema_version=True),
    "amount over 10^12": _raw(amount="1000000000000.01"),
    "amount with exponent": _raw(amount="1E+2"),
    # Decimal() reads any Unicode digit: the log's amounts are ASCII, or they are not amounts.
    "amount in Arabic-Indic digits": _raw(amount="\u0661\u0662.\u0663\u0664"),
    "amount with a fullwidth digit": _raw(amount="1\uff12.34"),
    "timestamp overflowing UTC": _raw(occurred_at="0001-01-01T00:00:00+14:00"),
    "transaction id with NUL": _raw(transaction_id="a\u0000b"),
    "transaction id too long": _raw(transaction_id="x" * 256),
    "transaction id with a newline": _raw(transaction_id="a\nb"),
    "transaction id with DEL": _raw(transaction_id="a\u007fb"),
    "producer with NUL": _raw(producer="a\u0000b"),
    "producer with a C1 control": _raw(producer="a\u0085b"),
    "producer with a tab": _raw(producer="shop\t1"),
    "producer too long": _raw(producer="p" * 256),
    "empty producer": _raw(producer=""),
    "producer with a lone surrogate": _raw(producer="\ud800"),
}


@pytest.mark.parametrize("value", POISON.values(), ids=POISON.keys())
def test_poison_messages_are_refused(value: bytes | None) -> None:
    with pytest.raises(EventDecodeError):
        deserialize(value)


@pytest.mark.parametrize(
    "text", ["shop-42", "auth0|5f7c8ec7c33c6c004bbafe82", "Müller & Söhne", "x" * 255]
)
def test_any_producer_or_id_without_control_characters_up_to_the_cap_is_valid(text: str) -> None:
    decoded = deserialize(serialize(event(producer=text, transaction_id=text)))
    assert (decoded.producer, decoded.transaction_id) == (text, text)
    assert is_valid_producer(text)


@pytest.mark.parametrize("text", ["", "a\x00b", "a\x1fb", "a\x7fb", "a\x9fb", "x" * 256])
def test_the_shared_rule_refuses_control_characters_and_lengths_past_the_cap(text: str) -> None:
    assert not is_valid_producer(text)
    for field in ("producer", "transaction_id"):
        with pytest.raises(EventDecodeError, match=field):
            deserialize(_raw(**{field: text}))


@given(
    amount=st.decimals(
        min_value=Decimal("0.01"), max_value=Decimal(10) ** 12, places=2, allow_nan=False
    ),
    occurred=st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ),
    transaction_id=st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z"),
)
def test_any_valid_event_round_trips_exactly(
    amount: Decimal, occurred: datetime, transaction_id: str
) -> None:
    original = event(amount=amount, occurred_at=occurred, transaction_id=transaction_id)
    decoded = deserialize(serialize(original))
    assert decoded == original
    assert str(decoded.amount) == str(amount)


@pytest.mark.parametrize("amount", ["1E+2", "1.000", "0.10", "1000000000000", "5"])
def test_any_equal_amount_is_written_in_the_form_the_reader_accepts(amount: str) -> None:
    written = event(amount=Decimal(amount))
    assert deserialize(serialize(written)).amount == Decimal(amount)


def test_events_by_column_serialize_as_each_event_does() -> None:
    events = [
        event(),
        event(transaction_id="order-2", amount=Decimal("1000000000000.00")),
        event(occurred_at=datetime(2026, 11, 26, 12, 0, 0, 1, tzinfo=UTC), producer='a "b"'),
    ]
    for producer in {one.producer for one in events}:
        mine = [one for one in events if one.producer == producer]
        recorded_at = mine[0].recorded_at.astimezone(timezone(timedelta(hours=-3)))
        assert serialize_columns(
            [one.event_id for one in mine],
            [one.transaction_id for one in mine],
            [str(one.amount) for one in mine],
            [one.occurred_at.astimezone(UTC) for one in mine],
            recorded_at=recorded_at,
            producer=producer,
        ) == [serialize(one) for one in mine]
