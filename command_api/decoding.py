"""Everything that turns a request body into commands: the content type, the exact JSON
parse, a fast path for valid bodies, and validation through the models.

The exact parse reads numbers as `Decimal` from their text (FastAPI's default `json.loads`
would turn 0.1 into a float), refuses `NaN`/`Infinity` and repeated keys, and accepts only
`application/json` (UTF-8). The Pydantic models (`command_api.models`) then validate what it
parsed: they are the one source of the schema and of every error.

The fast path: msgspec decodes a body straight into commands, in C, and takes only bodies the
models accept, with the same values. Anything else gives None and goes to the models, which
then say what is wrong. tests/unit/test_body_decoding.py holds the two together on the
validation table and on generated bodies. What this path takes is a strict subset of what the
models take: amounts as JSON numbers or decimal strings (no escapes), timestamps as
`YYYY-MM-DDThh:mm:ss[.ffffff]` with `Z` or `±hh:mm`, ids of 1..64 of [A-Za-z0-9._:-]; a
lower-case `t`, a 7th fractional digit or an escaped amount goes to the models.

A batch is decoded by column (`TransactionBatch`: amounts as the event's text, UTC times,
ids), never into an object per item: its items are most of what a full batch costs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.message import Message
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from command_api.models import (
    DECIMAL_STRING,
    POSTED_ID_PATTERN,
    TransactionBatchRequest,
    TransactionRequest,
    ValidationContext,
)
from command_api.services import MAX_BATCH_ITEMS, RecordTransaction, TransactionBatch
from shared.money import in_cents

JSON_MEDIA_TYPE = "application/json"
_TOO_DEEP = "The request body is nested too deeply."

ModelT = TypeVar("ModelT", bound=BaseModel)


class UnsupportedMediaTypeError(Exception):
    """415: the body is not declared as `application/json`."""


class MalformedJsonError(Exception):
    """400: the body is not one valid JSON document."""


async def read_body(request: Request) -> bytes:
    """The body, once it is declared as JSON."""
    check_content_type(request.headers.get("content-type"))
    return await request.body()


def decode_transaction_body(raw: bytes, context: ValidationContext) -> RecordTransaction:
    """The command of a `POST /transactions` body; the models raise what is wrong with it."""
    command = fast_transaction(raw, context)
    if command is None:
        return transaction_by_models(raw, context)
    return command


def decode_batch_body(raw: bytes, context: ValidationContext) -> TransactionBatch:
    """The commands of a `POST /transactions/batch` body; the models raise what is wrong."""
    batch = fast_batch(raw, context)
    if batch is None:
        return batch_by_models(raw, context)
    return batch


def transaction_by_models(raw: bytes, context: ValidationContext) -> RecordTransaction:
    """`decode_transaction_body` without the fast path."""
    return validate(TransactionRequest, parse_exact_json(raw), context=context).to_command()


def batch_by_models(raw: bytes, context: ValidationContext) -> TransactionBatch:
    """`decode_batch_body` without the fast path."""
    request = validate(TransactionBatchRequest, parse_exact_json(raw), context=context)
    return TransactionBatch.of(request.to_commands())


def check_content_type(header: str | None) -> None:
    if header == JSON_MEDIA_TYPE:  # what nearly every request sends: no parsing needed
        return
    message = Message()
    message["content-type"] = header or ""
    charset = message.get_content_charset("utf-8")
    if message.get_content_type() != JSON_MEDIA_TYPE or charset.lower() not in {"utf-8", "utf8"}:
        msg = "The request body must be sent as Content-Type: application/json (UTF-8)."
        raise UnsupportedMediaTypeError(msg)


def _refuse_constant(name: str) -> Any:
    msg = f"{name} is not a JSON number; send amounts as numbers or decimal strings."
    raise MalformedJsonError(msg)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            msg = f"The key {key!r} appears twice in one JSON object."
            raise MalformedJsonError(msg)
        result[key] = value
    return result


def parse_exact_json(raw: bytes) -> Any:
    """Parse UTF-8 JSON with every number as an exact `Decimal`."""
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError as err:
        msg = "The request body is not valid UTF-8."
        raise MalformedJsonError(msg) from err
    except json.JSONDecodeError as err:
        msg = f"The request body is not valid JSON ({err.msg} at position {err.pos})."
        raise MalformedJsonError(msg) from err
    except RecursionError as err:
        raise MalformedJsonError(_TOO_DEEP) from err
    except InvalidOperation as err:  # e.g. 1e999999999999999999999: no Decimal holds it
        msg = "The request body holds a number beyond the representable range."
        raise MalformedJsonError(msg) from err


def validate(model: type[ModelT], payload: Any, *, context: object) -> ModelT:
    """Validate a parsed body; field errors become the usual 422 problem (locations under
    `body`, e.g. `transactions.3.amount`)."""
    try:
        return model.model_validate(payload, context=context)
    except ValidationError as err:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in err.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from err


# The fast path (see the module's docstring).

_TIMESTAMP_FORM = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_TIMESTAMP = rf"^{_TIMESTAMP_FORM}\Z"
_POSTED_ID_FORM = POSTED_ID_PATTERN.removeprefix("^").removesuffix("\\Z")
_NUMBER_STRING = re.compile(f'"{DECIMAL_STRING.pattern}"'.encode())
_QUOTE = ord('"')


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    amount: msgspec.Raw
    timestamp: Annotated[str, msgspec.Meta(pattern=_TIMESTAMP)]
    # absent (UNSET) and null (None) differ in the body's quotes: see _no_repeated_keys
    transaction_id: (
        Annotated[str, msgspec.Meta(pattern=POSTED_ID_PATTERN)] | msgspec.UnsetType | None
    ) = msgspec.UNSET


class _BatchItem(msgspec.Struct, forbid_unknown_fields=True):
    """`_Item` without the patterns: msgspec checks a pattern with one Python `re` call per
    string, a large part of decoding a full batch; `_all_timestamps` and `_all_posted_ids`
    check a whole column in one."""

    amount: msgspec.Raw
    timestamp: str
    transaction_id: str | msgspec.UnsetType | None = msgspec.UNSET


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    transactions: Annotated[
        list[_BatchItem], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)
    ]


def _column_check(form: str) -> Callable[[list[str]], bool]:
    """Whether every string of a column matches `form` (a pattern without anchors and
    without a line feed): one match over the column joined by line feeds, and no string
    holding one of its own."""
    whole = re.compile(f"{form}(?:\n{form})*")

    def all_match(column: list[str]) -> bool:
        joined = "\n".join(column)
        return whole.fullmatch(joined) is not None and joined.count("\n") == len(column) - 1

    return all_match


_all_timestamps = _column_check(_TIMESTAMP_FORM)
_all_posted_ids = _column_check(_POSTED_ID_FORM)


_decode_item = msgspec.json.Decoder(_Item).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode


class _Refused(Exception):
    pass


def fast_transaction(raw: bytes, context: ValidationContext) -> RecordTransaction | None:
    """The command of a valid `POST /transactions` body, or None (the models decide)."""
    try:
        item = _decode_item(raw)
        _no_repeated_keys(raw, [bytes(item.amount)], [item.transaction_id], keys=0)
        return _command(item, context.latest)
    except (msgspec.MsgspecError, _Refused, ValueError, OverflowError, InvalidOperation):
        return None
    except RecursionError as err:  # msgspec's depth limit (an amount of nested arrays)
        raise MalformedJsonError(_TOO_DEEP) from err


def fast_batch(raw: bytes, context: ValidationContext) -> TransactionBatch | None:
    """The commands of a valid `POST /transactions/batch` body, or None (the models decide).
    Column by column, as the recorder takes them: no command object per item, and each
    column one pass of C calls where it can be (a batch's items cost most of its request)."""
    try:
        items = _decode_batch(raw).transactions
        tokens = [bytes(item.amount) for item in items]
        posted = [item.transaction_id for item in items]
        _no_repeated_keys(raw, tokens, posted, keys=1)
        stamps = [item.timestamp for item in items]
        ids = [posted_id if isinstance(posted_id, str) else None for posted_id in posted]
        given = [posted_id for posted_id in ids if posted_id is not None]
        if not _all_timestamps(stamps) or (given and not _all_posted_ids(given)):
            return None
        amounts = [_amount_text(token) for token in tokens]
        occurred_at = [_from_iso(stamp) for stamp in stamps]
        occurred_at = [at if at.tzinfo is UTC else at.astimezone(UTC) for at in occurred_at]
        if max(occurred_at) > context.latest:
            return None
    except (msgspec.MsgspecError, _Refused, ValueError, OverflowError, InvalidOperation):
        return None
    except RecursionError as err:  # msgspec's depth limit (an amount of nested arrays)
        raise MalformedJsonError(_TOO_DEEP) from err
    if len(set(given)) != len(given):
        return None
    return TransactionBatch(amounts, occurred_at, ids)


_from_iso = datetime.fromisoformat


def _no_repeated_keys(
    raw: bytes, amounts: list[bytes], ids: list[str | msgspec.UnsetType | None], *, keys: int
) -> None:
    """msgspec keeps the last of repeated keys; the models' parser refuses them (400). Every
    string of a body this path takes holds no quote (keys are field names, values are checked
    after this), so it has exactly two quote bytes per key and string value: a repeated key,
    even spelled with escapes, adds at least two. `keys`: those outside the items; `amounts`
    and `ids`: the items' raw amounts and their `transaction_id`s (UNSET when absent)."""
    present = len(ids) - ids.count(msgspec.UNSET)
    strings = keys + 3 * len(amounts) + present + present - ids.count(None)  # keys, timestamps
    if raw.count(b'"') != 2 * strings + b"".join(amounts).count(b'"'):
        raise _Refused


def _command(item: _Item, latest: datetime) -> RecordTransaction:
    occurred_at = datetime.fromisoformat(item.timestamp)
    if occurred_at.tzinfo is not UTC:  # `Z` parses as UTC already: no new datetime for it
        occurred_at = occurred_at.astimezone(UTC)
    if occurred_at > latest:
        raise _Refused
    transaction_id = item.transaction_id if isinstance(item.transaction_id, str) else None
    return RecordTransaction._make((_amount(bytes(item.amount)), occurred_at, transaction_id))


def _amount(token: bytes) -> Decimal:
    if token[0] == _QUOTE:
        if _NUMBER_STRING.fullmatch(token) is None:
            raise _Refused
        token = token[1:-1]
    elif token[0] not in b"-0123456789":  # true, false, null, an object or an array
        raise _Refused
    amount = in_cents(Decimal(token.decode()))
    if amount is None:
        raise _Refused
    return amount


# The usual amounts, as a JSON number or string: 0 or 1..12 digits without a leading zero,
# and at most two fractional digits. Their two-decimal text is written from the digits, no
# `Decimal` made; every other amount goes through `_amount`. (A token from msgspec is one whole
# JSON value: a leading quote has its closing one.)
_CENTS = re.compile(rb'"?(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?"?')
_TWO_DECIMALS = {None: b".00"} | {
    f".{digits}".encode(): f".{digits:0<2}".encode()
    for digits in [*map(str, range(10)), *(f"{n:02d}" for n in range(100))]
}


def _amount_text(token: bytes) -> str:
    """The event's text of a valid amount (raise `_Refused` for any other)."""
    match = _CENTS.fullmatch(token)
    if match is None:
        return str(_amount(token))
    text = (match[1] + _TWO_DECIMALS[match[2]]).decode()
    if text == "0.00":
        raise _Refused
    return text
