"""Request and response DTOs of the command API, with the validation rules of the contract.

`command_api.decoding` parses a body (JSON numbers become exact `Decimal`s) and validates it
here with a `ValidationContext` that carries the server's clock for the future-skew rule;
valid bodies mostly take its fast path. These models are the schema and give every error.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError, PydanticKnownError

from command_api.services import (
    MAX_BATCH_ITEMS,
    Receipt,
    RecordTransaction,
)
from shared.money import CENT, MAX_AMOUNT, MAX_AMOUNT_TEXT, amount_violation

# The text an amount string may hold: a JSON number (RFC 8259) without an exponent, so that
# the OpenAPI pattern below can state exactly which strings are valid amounts.
DECIMAL_STRING = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
# A valid amount as a string, the whole rule of shared.money in the grammar above: 0.01 up to
# 999999999999.99 (trailing zeros after the cents allowed: 1.100 is 1.10), or 10^12 itself.
AMOUNT_STRING_PATTERN = (
    r"^(?:[1-9][0-9]{0,11}(?:\.[0-9]{1,2}0*)?"
    r"|0\.(?:[1-9][0-9]?|0[1-9])0*"
    rf"|{int(MAX_AMOUNT)}(?:\.0+)?)$"
)
# RFC 3339 date-time; the offset is optional here so that a missing one gets its own error.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
TRANSACTION_ID_CHARACTER = "[A-Za-z0-9._:-]"
TRANSACTION_ID_PATTERN = f"^{TRANSACTION_ID_CHARACTER}+$"
MAX_POSTED_ID_LENGTH = 64  # the log takes up to 255 (shared.events)
# The whole rule of a posted id (characters and length) in one pattern, for the checks made
# outside these models (the decoding fast path, the Idempotency-Key header), and in words.
POSTED_ID_PATTERN = rf"^{TRANSACTION_ID_CHARACTER}{{1,{MAX_POSTED_ID_LENGTH}}}\Z"
POSTED_ID_RULE = f"1..{MAX_POSTED_ID_LENGTH} of {TRANSACTION_ID_CHARACTER}"


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """Passed to `model_validate(..., context=...)`: what "now" is for this request."""

    now: datetime
    max_clock_skew: timedelta

    @property
    def latest(self) -> datetime:
        """The latest timestamp a transaction may carry."""
        return self.now + self.max_clock_skew


def _amount_input(value: Any) -> Any:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and DECIMAL_STRING.fullmatch(value):
        return Decimal(value)
    raise PydanticCustomError(
        "amount_type",
        "amount must be a JSON number or a decimal string without an exponent, "
        'e.g. 12.34 or "12.34"',
    )


def _valid_amount(value: Decimal) -> Decimal:
    """The amount rule (shared.money), each part failing as Pydantic's own constraints do."""
    match amount_violation(value):
        case None:
            return value.quantize(CENT)
        case "not_finite":
            raise PydanticKnownError("finite_number")
        case "not_positive":
            raise PydanticKnownError("greater_than", {"gt": 0})
        case "above_maximum":
            raise PydanticKnownError("less_than_equal", {"le": int(MAX_AMOUNT)})
        case "sub_cent":
            raise PydanticCustomError(
                "decimal_max_places", "amount must have at most 2 fractional digits"
            )


def _timestamp_input(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "datetime_type", "timestamp must be an RFC 3339 string, e.g. 2026-11-26T12:00:00Z"
        )
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "datetime_format",
            "timestamp must be an RFC 3339 date-time, e.g. 2026-11-26T12:00:00Z",
        )
    if match["offset"] is None:
        raise PydanticCustomError(
            "timezone_aware", "timestamp must carry a timezone offset (Z or +hh:mm)"
        )
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise PydanticCustomError(
            "datetime_range", "timestamp is out of the representable range"
        ) from err


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount_input),
    AfterValidator(_valid_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": int(MAX_AMOUNT),
                    "multipleOf": float(CENT),
                },
                {"type": "string", "pattern": AMOUNT_STRING_PATTERN},
            ],
            "examples": [12.34, "12.34"],
        }
    ),
]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp_input), AfterValidator(_in_utc)]
TransactionId = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=MAX_POSTED_ID_LENGTH,
        pattern=TRANSACTION_ID_PATTERN,
    ),
]


class TransactionRequest(BaseModel):
    """One transaction as a producer posts it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"amount": "12.34", "timestamp": "2026-11-26T12:00:00Z", "transaction_id": "t-1"}
            ]
        },
    )

    amount: Amount = Field(
        description=f"Greater than 0, at most {MAX_AMOUNT_TEXT}, at most 2 fractional digits. "
        "A JSON number (parsed exactly from its text: 0.1 is 0.1) or a decimal string "
        "without an exponent."
    )
    timestamp: Timestamp = Field(
        description="When the transaction happened: RFC 3339 with a timezone (Z or ±hh:mm), "
        "not more than MAX_CLOCK_SKEW_SECONDS ahead of the server's clock. Old is fine."
    )
    transaction_id: TransactionId | None = Field(
        default=None,
        description=f"Idempotency key, {POSTED_ID_RULE}. Generated when absent; "
        "supply your own so that a retry after a 503 is counted once. Ids are the producer's "
        "own (the token's `sub`): the same id from two producers is two transactions.",
    )

    @field_validator("timestamp")
    @classmethod
    def _not_in_the_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        context = info.context
        if not isinstance(context, ValidationContext):
            msg = "TransactionRequest needs a ValidationContext"
            raise TypeError(msg)
        if value > context.latest:
            seconds = context.max_clock_skew.total_seconds()
            raise PydanticCustomError(
                "timestamp_in_future",
                "timestamp is more than {seconds} s ahead of the server's clock",
                {"seconds": seconds},
            )
        return value

    def to_command(self) -> RecordTransaction:
        return RecordTransaction(
            amount=self.amount, occurred_at=self.timestamp, transaction_id=self.transaction_id
        )


class TransactionBatchRequest(BaseModel):
    """Up to 1,000 transactions, validated all-or-nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transactions: list[TransactionRequest] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        description=f"1..{MAX_BATCH_ITEMS} transactions; transaction ids must be distinct.",
    )

    @field_validator("transactions")
    @classmethod
    def _distinct_ids(cls, items: list[TransactionRequest]) -> list[TransactionRequest]:
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.transaction_id is None:
                continue
            if item.transaction_id in first_index:
                raise PydanticCustomError(
                    "duplicate_transaction_id",
                    "items {first} and {index} share the transaction_id {transaction_id!r}",
                    {
                        "first": first_index[item.transaction_id],
                        "index": index,
                        "transaction_id": item.transaction_id,
                    },
                )
            first_index[item.transaction_id] = index
        return items

    def to_commands(self) -> list[RecordTransaction]:
        return [item.to_command() for item in self.transactions]


class Position(BaseModel):
    partition: int = Field(description="Kafka partition the event was appended to.")
    offset: int = Field(description="Offset of the event itself in that partition.")


class RecordedItem(BaseModel):
    transaction_id: str = Field(description="The client's id, or the one generated for it.")
    event_id: uuid.UUID
    position: Position


_CONSISTENCY_DOC = (
    "Pass to `GET /stats?consistency_token=...` on the query API to read your own writes: "
    "it names, per partition, the highest offset this request appended."
)


class TransactionRecordedResponse(RecordedItem):
    """201: the event is durably in the log (acknowledged with acks=all)."""

    consistency_token: str = Field(description=_CONSISTENCY_DOC)


class BatchRecordedResponse(BaseModel):
    """201: every event of the batch is durably in the log."""

    transactions: list[RecordedItem] = Field(
        description="One entry per request item, in request order."
    )
    consistency_token: str = Field(description=_CONSISTENCY_DOC)


# The 201 bodies are encoded straight from the receipt: the models above are their schema
# (OpenAPI, and a test holds every body to them), but building and validating a model per
# item would be a large part of the work of answering a full batch. msgspec Structs (field
# order = the order on the wire) encode without a dict per item.


class _WirePosition(msgspec.Struct):
    partition: int
    offset: int


class _WireItem(msgspec.Struct):
    transaction_id: str
    event_id: uuid.UUID
    position: _WirePosition


class _WireRecorded(msgspec.Struct):
    transaction_id: str
    event_id: uuid.UUID
    position: _WirePosition
    consistency_token: str


class _WireBatch(msgspec.Struct):
    transactions: list[_WireItem]
    consistency_token: str


_encode = msgspec.json.Encoder().encode


def recorded_json(receipt: Receipt) -> bytes:
    """A `TransactionRecordedResponse`."""
    [transaction_id] = receipt.transaction_ids
    [event_id] = receipt.event_ids
    [(partition, offset)] = receipt.positions
    return _encode(
        _WireRecorded(
            transaction_id,
            event_id,
            _WirePosition(partition, offset),
            receipt.consistency_token,
        )
    )


def batch_recorded_json(receipt: Receipt) -> bytes:
    """A `BatchRecordedResponse`."""
    items = [
        _WireItem(transaction_id, event_id, _WirePosition(partition, offset))
        for transaction_id, event_id, (partition, offset) in zip(
            receipt.transaction_ids, receipt.event_ids, receipt.positions, strict=True
        )
    ]
    return _encode(_WireBatch(items, receipt.consistency_token))
