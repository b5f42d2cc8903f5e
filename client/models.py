"""The typed values of the txstats API, as the client sees them: what a producer sends, what
the APIs answer, and what `record_many` reports per item. Money is `Decimal`; responses are
decoded by msgspec straight into these frozen structs (strict: a field of the wrong type is an
error, never a guess)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec


class Transaction(msgspec.Struct, frozen=True, kw_only=True):
    """One transaction to record. `amount` is a `Decimal` (or a decimal string, sent as is:
    the server validates it); `timestamp` a timezone-aware `datetime` (or an RFC 3339 string,
    sent as is). Without a `transaction_id` the client gives it one before the first attempt,
    so that a retry is counted once."""

    amount: Decimal | str
    timestamp: datetime | str
    transaction_id: str | None = None


# gc=False: the values made by the thousand per batch (positions, receipts' items, outcomes,
# the items sent) hold no container and so can be in no reference cycle; left untracked, they
# never set off the garbage collector's passes over everything alive.


class Position(msgspec.Struct, frozen=True, gc=False):
    partition: int
    offset: int


class FieldError(msgspec.Struct, frozen=True):
    location: str
    field: str
    message: str
    code: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """An `application/problem+json` answer (RFC 9457)."""

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""
    errors: list[FieldError] = []

    def describe(self) -> str:
        """One line: the detail, then each field error."""
        fields = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return f"{self.detail} {fields}".strip() if fields else self.detail or self.title


class Receipt(msgspec.Struct, frozen=True):
    """201 of `POST /transactions`: durably in the log at `position`."""

    transaction_id: str
    event_id: str
    position: Position
    consistency_token: str


class RecordedItem(msgspec.Struct, frozen=True, gc=False):
    """An item of a batch's 201, answered in the request's order: only its position is read
    (the client knows the ids it sent), so decoding makes no string per item."""

    position: Position


class BatchReceipt(msgspec.Struct, frozen=True):
    transactions: list[RecordedItem]
    consistency_token: str


class Window(msgspec.Struct, frozen=True):
    seconds: int
    start: datetime
    end: datetime


class AsOf(msgspec.Struct, frozen=True, kw_only=True):
    """Which state of the projection answered: per partition the next offset it will fold."""

    version: int
    offsets: dict[int, int]
    lag: dict[int, int]
    total_lag: int
    server_time: datetime
    window: Window | None = None


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    sum: Decimal
    avg: Decimal | None
    max: Decimal | None
    min: Decimal | None
    as_of: AsOf


class Occurrence(msgspec.Struct, frozen=True, kw_only=True):
    amount: Decimal
    occurred_at: datetime
    partition: int
    offset: int
    recorded_at: datetime
    producer: str


class Counted(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /transactions/{id}`: the projection counted this id (its first occurrence)."""

    transaction_id: str
    state: str
    amount: Decimal | None
    occurred_at: datetime | None
    partition: int | None
    offset: int | None
    recorded_at: datetime | None
    producer: str | None
    duplicates: int
    conflicts: int
    conflicting: list[Occurrence]
    as_of: AsOf


class NotCounted(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /transactions/{id}` answered 404: not counted as of `as_of` (never posted, not
    folded yet, or not visible to this token). After a read that waited for the write's
    consistency token, it means not counted."""

    transaction_id: str
    as_of: AsOf


TransactionStatus = Counted | NotCounted


# What record_many reports per item, in input order.


class Accepted(msgspec.Struct, frozen=True, gc=False):
    """Durably in the log at `position`; `consistency_token` is its request's (it covers the
    item)."""

    transaction_id: str
    position: Position
    consistency_token: str


class Refused(msgspec.Struct, frozen=True):
    """Refused with a 4xx, never retried. `errors` are the field errors naming this item (for a
    batch, `transactions.<i>.` is taken off their `field`); `for_item` tells an item the server
    refused (its own fields) from a request refused as a whole (401, 403, 413, ...)."""

    transaction_id: str
    status: int
    problem: Problem
    errors: list[FieldError]
    for_item: bool

    def reason(self) -> str:
        if self.errors:
            return "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return f"{self.status} {self.problem.describe()}"


class GivenUp(msgspec.Struct, frozen=True):
    """Not confirmed: retries ran out (5xx answers, connection errors, timeouts). It may or
    may not be in the log; sending it again with the same `transaction_id` is safe."""

    transaction_id: str
    reason: str


Outcome = Accepted | Refused | GivenUp

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode(kind: Any, raw: bytes) -> Any:
    """Decode `raw` JSON into `kind` (one cached decoder per type)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder.decode(raw)
