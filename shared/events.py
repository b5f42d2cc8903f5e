"""The event log's contract: `TransactionRecorded` v1, one serializer for every producer and
consumer. Amounts travel as exact decimal strings, timestamps as RFC 3339 UTC.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import orjson

from shared.money import CENT

EVENT_TYPE = "TransactionRecorded"
SCHEMA_VERSION = 1

MAX_AMOUNT = Decimal(10**12)
MAX_TRANSACTION_ID_LENGTH = 255  # the command API allows 64
_AMOUNT = re.compile(r"\d{1,13}(\.\d{1,2})?\Z")

HEADER_TYPE = "event_type"
HEADER_VERSION = "schema_version"


class EventDecodeError(ValueError):
    """A message on the topic is not a valid `TransactionRecorded` v1 (a poison message)."""


class TransactionRecorded(NamedTuple):
    """Immutable; a NamedTuple because the projector builds hundreds of thousands a second
    and a frozen dataclass costs ten times as much to construct."""

    event_id: uuid.UUID
    transaction_id: str
    amount: Decimal
    occurred_at: datetime
    recorded_at: datetime
    producer: str

    @property
    def key(self) -> bytes:
        """Kafka message key: the transaction id, so retries land on the same partition."""
        return self.transaction_id.encode()


def event_headers() -> list[tuple[str, bytes]]:
    return [(HEADER_TYPE, EVENT_TYPE.encode()), (HEADER_VERSION, str(SCHEMA_VERSION).encode())]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def serialize(event: TransactionRecorded) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(event.event_id),
            "event_type": EVENT_TYPE,
            "schema_version": SCHEMA_VERSION,
            "transaction_id": event.transaction_id,
            "amount": f"{event.amount.quantize(CENT):f}",  # plain, two decimals: what we read
            "occurred_at": _rfc3339(event.occurred_at),
            "recorded_at": _rfc3339(event.recorded_at),
            "producer": event.producer,
        }
    )


def _field(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        msg = f"field {name!r} must be a non-empty string"
        raise EventDecodeError(msg)
    return value


def _timestamp(body: dict[str, object], name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_field(body, name))
    except ValueError as err:
        msg = f"field {name!r} is not an RFC 3339 timestamp"
        raise EventDecodeError(msg) from err
    if moment.tzinfo is None:
        msg = f"field {name!r} has no timezone"
        raise EventDecodeError(msg)
    try:
        return moment.astimezone(UTC)
    except OverflowError as err:  # e.g. 0001-01-01T00:00:00+14:00
        msg = f"field {name!r} is out of range in UTC"
        raise EventDecodeError(msg) from err


def _transaction_id(body: dict[str, object]) -> str:
    """Stored as a key by the projector: bounded (an index entry holds ~2.7 kB) and without
    NUL (PostgreSQL text cannot hold it); either would fail every retry of the batch."""
    value = _field(body, "transaction_id")
    if len(value) > MAX_TRANSACTION_ID_LENGTH or "\x00" in value:
        msg = f"field 'transaction_id' must be 1..{MAX_TRANSACTION_ID_LENGTH} characters, no NUL"
        raise EventDecodeError(msg)
    return value


def _amount(body: dict[str, object]) -> Decimal:
    text = _field(body, "amount")
    if _AMOUNT.match(text) is None:
        msg = "field 'amount' is not a plain decimal with at most 2 fractional digits"
        raise EventDecodeError(msg)
    amount = Decimal(text)
    if amount <= 0 or amount > MAX_AMOUNT:
        msg = "field 'amount' must be in (0, 10^12]"
        raise EventDecodeError(msg)
    return amount


def deserialize(value: bytes | None) -> TransactionRecorded:
    """Parse and validate one message value; raise `EventDecodeError` for anything else."""
    if value is None:
        msg = "empty message"
        raise EventDecodeError(msg)
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        msg = "message is not JSON"
        raise EventDecodeError(msg) from err
    if not isinstance(body, dict):
        msg = "message is not a JSON object"
        raise EventDecodeError(msg)
    if body.get("event_type") != EVENT_TYPE:
        msg = f"unknown event type {body.get('event_type')!r}"
        raise EventDecodeError(msg)
    version = body.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        msg = f"unknown schema version {version!r}"
        raise EventDecodeError(msg)
    try:
        event_id = uuid.UUID(_field(body, "event_id"))
    except ValueError as err:
        msg = "field 'event_id' is not a UUID"
        raise EventDecodeError(msg) from err
    return TransactionRecorded(  # positional: a third cheaper than keywords, per event
        event_id,
        _transaction_id(body),  # transaction_id
        _amount(body),  # amount
        _timestamp(body, "occurred_at"),
        _timestamp(body, "recorded_at"),
        _field(body, "producer"),
    )
