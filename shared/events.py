"""The event log's contract: `TransactionRecorded` v1, one serializer for every producer and
consumer. Amounts travel as exact decimal strings, timestamps as RFC 3339 UTC.

msgspec decodes and type-checks a message in C (JSON, UUID, RFC 3339 timestamps with a zone,
string lengths); what is left in Python is the amount's exact form and range, and UTC.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, NamedTuple

import msgspec

from shared.money import CENT, MAX_AMOUNT_TEXT, is_valid_amount

EVENT_TYPE = "TransactionRecorded"
SCHEMA_VERSION = 1

# The projector stores both as keys (an index entry holds ~2.7 kB, and PostgreSQL text cannot
# hold NUL): a longer one, or one with a control character, would fail every retry of its batch.
MAX_TRANSACTION_ID_LENGTH = 255  # the command API allows 64
MAX_PRODUCER_LENGTH = 255  # the JWT `sub` that posted the event
# ASCII digits only: `\d` and Decimal() would take any script's.
_AMOUNT = re.compile(r"[0-9]{1,13}(\.[0-9]{1,2})?\Z")
# Unicode's control characters (Cc), and lone surrogates (Cs), which JSON escapes can carry
# but UTF-8 (msgspec's encoder, PostgreSQL's text) cannot.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""The control-character rule as a pattern, for schemas (OpenAPI, request parameters): a
lone surrogate cannot arrive in a percent-decoded UTF-8 parameter."""

HEADER_TYPE = "event_type"
HEADER_VERSION = "schema_version"


class EventDecodeError(ValueError):
    """A message on the topic is not a valid `TransactionRecorded` v1 (a poison message)."""


class TransactionRecorded(NamedTuple):
    """Immutable; a NamedTuple because the projector builds one per event it folds, and a
    NamedTuple is far cheaper to construct than a frozen dataclass."""

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


class _Wire(msgspec.Struct):
    """A message value as `serialize` writes it (a Struct: encoded without a dict per event;
    the field order is the order on the wire)."""

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    transaction_id: str
    amount: str  # plain, two decimals: what `_amount` reads
    occurred_at: datetime
    recorded_at: datetime
    producer: str


def serialize(event: TransactionRecorded) -> bytes:
    """msgspec writes the UUID and the UTC timestamps (RFC 3339, `Z`) in C."""
    return _encode(
        _Wire(
            event.event_id,
            EVENT_TYPE,
            SCHEMA_VERSION,
            event.transaction_id,
            str(event.amount.quantize(CENT)),
            _in_utc(event.occurred_at),
            _in_utc(event.recorded_at),
            event.producer,
        )
    )


def serialize_columns(
    event_ids: Iterable[uuid.UUID],
    transaction_ids: Iterable[str],
    amounts: Iterable[str],
    occurred_at: Iterable[datetime],
    *,
    recorded_at: datetime,
    producer: str,
) -> list[bytes]:
    """`serialize` of many events given by column, without a `TransactionRecorded` each (the
    batch path): `amounts` already in their two-decimal text, `occurred_at` already in UTC."""
    recorded_at = _in_utc(recorded_at)
    return [
        _encode(
            _Wire(
                event_id,
                EVENT_TYPE,
                SCHEMA_VERSION,
                transaction_id,
                amount,
                occurred,
                recorded_at,
                producer,
            )
        )
        for event_id, transaction_id, amount, occurred in zip(
            event_ids, transaction_ids, amounts, occurred_at, strict=True
        )
    ]


_encode = msgspec.json.Encoder().encode


class _Message(msgspec.Struct):
    """A message value as it must look on the topic (unknown fields are ignored)."""

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    transaction_id: str  # checked by `_is_key_text`, as the producer
    amount: Annotated[str, msgspec.Meta(min_length=1)]
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    recorded_at: Annotated[datetime, msgspec.Meta(tz=True)]
    producer: str


_decode = msgspec.json.Decoder(_Message).decode


def _is_key_text(text: str, max_length: int) -> bool:
    """The one rule for the texts the projector stores as keys (transaction id, producer):
    1 to `max_length` characters, none of them a control character (or a lone surrogate)."""
    if not 0 < len(text) <= max_length:
        return False
    # An ASCII string without control characters is printable: one C call decides the usual
    # case, the regex only the rest.
    if text.isascii():
        return text.isprintable()
    return _CONTROL.search(text) is None


def is_valid_producer(producer: str) -> bool:
    """What a producer (the JWT `sub` that posts) must be for its events to be folded."""
    return _is_key_text(producer, MAX_PRODUCER_LENGTH)


def _in_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _utc(moment: datetime, name: str) -> datetime:
    try:
        return _in_utc(moment)
    except OverflowError as err:  # e.g. 0001-01-01T00:00:00+14:00
        msg = f"field {name!r} is out of range in UTC"
        raise EventDecodeError(msg) from err


def _amount(text: str) -> Decimal:
    if _AMOUNT.match(text) is None:
        msg = "field 'amount' is not a plain decimal with at most 2 fractional digits"
        raise EventDecodeError(msg)
    amount = Decimal(text)
    if not is_valid_amount(amount):
        msg = f"field 'amount' must be in (0, {MAX_AMOUNT_TEXT}]"
        raise EventDecodeError(msg)
    return amount


def deserialize(value: bytes | None) -> TransactionRecorded:
    """Parse and validate one message value; raise `EventDecodeError` for anything else."""
    if value is None:
        msg = "empty message"
        raise EventDecodeError(msg)
    try:
        message = _decode(value)
    except msgspec.DecodeError as err:  # not JSON, or a field missing or of the wrong type
        raise EventDecodeError(str(err)) from err
    if message.event_type != EVENT_TYPE:
        msg = f"unknown event type {message.event_type!r}"
        raise EventDecodeError(msg)
    if message.schema_version != SCHEMA_VERSION:
        msg = f"unknown schema version {message.schema_version!r}"
        raise EventDecodeError(msg)
    if not _is_key_text(message.transaction_id, MAX_TRANSACTION_ID_LENGTH):
        msg = (
            f"field 'transaction_id' must be 1..{MAX_TRANSACTION_ID_LENGTH} characters,"
            " none of them a control character"
        )
        raise EventDecodeError(msg)
    if not _is_key_text(message.producer, MAX_PRODUCER_LENGTH):
        msg = (
            f"field 'producer' must be 1..{MAX_PRODUCER_LENGTH} characters,"
            " none of them a control character"
        )
        raise EventDecodeError(msg)
    return TransactionRecorded(  # positional: cheaper than keywords, and this runs per event
        message.event_id,
        message.transaction_id,
        _amount(message.amount),
        _utc(message.occurred_at, "occurred_at"),
        _utc(message.recorded_at, "recorded_at"),
        message.producer,
    )
