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
lower-case `t`, a 7th fractional digit or an escaped character goes to the models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
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
from command_api.services import MAX_BATCH_ITEMS, RecordTransaction
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


def decode_batch_body(raw: bytes, context: ValidationContext) -> list[RecordTransaction]:
    """The commands of a `POST /transactions/batch` body; the models raise what is wrong."""
    commands = fast_batch(raw, context)
    if commands is None:
        return batch_by_models(raw, context)
    return commands


def transaction_by_models(raw: bytes, context: ValidationContext) -> RecordTransaction:
    """`decode_transaction_body` without the fast path."""
    return validate(TransactionRequest, parse_exact_json(raw), context=context).to_command()


def batch_by_models(raw: bytes, context: ValidationContext) -> list[RecordTransaction]:
    """`decode_batch_body` without the fast path."""
    return validate(TransactionBatchRequest, parse_exact_json(raw), context=context).to_commands()


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

_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)
_NUMBER_STRING = re.compile(f'"{DECIMAL_STRING.pattern}"'.encode())
_QUOTE = ord('"')


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    amount: msgspec.Raw
    timestamp: Annotated[str, msgspec.Meta(pattern=_TIMESTAMP)]
    # absent (UNSET) and null (None) differ in the body's quotes: see _no_repeated_keys
    transaction_id: (
        Annotated[str, msgspec.Meta(pattern=POSTED_ID_PATTERN)] | msgspec.UnsetType | None
    ) = msgspec.UNSET


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    transactions: Annotated[list[_Item], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


_decode_item = msgspec.json.Decoder(_Item).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode


class _Refused(Exception):
    pass


def fast_transaction(raw: bytes, context: ValidationContext) -> RecordTransaction | None:
    """The command of a valid `POST /transactions` body, or None (the models decide)."""
    try:
        item = _decode_item(raw)
        _no_repeated_keys(raw, [item], keys=0)
        return _command(item, context.latest)
    except (msgspec.MsgspecError, _Refused, ValueError, OverflowError, InvalidOperation):
        return None
    except RecursionError as err:  # msgspec's depth limit (an amount of nested arrays)
        raise MalformedJsonError(_TOO_DEEP) from err


def fast_batch(raw: bytes, context: ValidationContext) -> list[RecordTransaction] | None:
    """The commands of a valid `POST /transactions/batch` body, or None (the models decide)."""
    try:
        items = _decode_batch(raw).transactions
        _no_repeated_keys(raw, items, keys=1)
        latest = context.latest
        commands = [_command(item, latest) for item in items]
    except (msgspec.MsgspecError, _Refused, ValueError, OverflowError, InvalidOperation):
        return None
    except RecursionError as err:  # msgspec's depth limit (an amount of nested arrays)
        raise MalformedJsonError(_TOO_DEEP) from err
    ids = [command.transaction_id for command in commands if command.transaction_id]
    return commands if len(set(ids)) == len(ids) else None


def _no_repeated_keys(raw: bytes, items: Iterable[_Item], *, keys: int) -> None:
    """msgspec keeps the last of repeated keys; the models' parser refuses them (400). Every
    string of a body this path takes holds no quote (keys are field names, values are checked
    above), so it has exactly two quote bytes per key and string value: a repeated key, even
    spelled with escapes, adds at least two. `keys`: those outside the items."""
    strings = keys
    for item in items:
        strings += 3 + (bytes(item.amount)[0] == _QUOTE)  # 2 keys, the timestamp, the amount
        if item.transaction_id is not msgspec.UNSET:
            strings += 1 + (item.transaction_id is not None)  # the key, a string value
    if raw.count(b'"') != 2 * strings:
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
