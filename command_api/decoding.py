"""The fast path of a request body: msgspec decodes it straight into commands, in C, and takes
only bodies the Pydantic models (`command_api.models`) accept, with the same values. Anything
else gives None and goes to the models, which then say what is wrong: they stay the one source
of the schema and of every error. tests/unit/test_body_decoding.py holds the two together on
the validation table and on generated bodies.

What this path takes is a strict subset of what the models take: amounts as JSON numbers or
plain number strings (no escapes), timestamps as `YYYY-MM-DDThh:mm:ss[.ffffff]` with `Z` or
`±hh:mm`, ids of 1..64 of [A-Za-z0-9._:-]; a lower-case `t`, a 7th fractional digit or an
escaped character goes to the models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

import msgspec

from command_api.body import parse_exact_json, validate
from command_api.models import (
    JSON_NUMBER,
    MAX_POSTED_ID_LENGTH,
    TRANSACTION_ID_CHARACTER,
    TransactionBatchRequest,
    TransactionRequest,
    ValidationContext,
)
from command_api.services import MAX_BATCH_ITEMS, RecordTransaction
from shared.money import CENT, is_valid_amount

_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)
_TRANSACTION_ID = rf"^{TRANSACTION_ID_CHARACTER}{{1,{MAX_POSTED_ID_LENGTH}}}\Z"
_NUMBER_STRING = re.compile(f'"{JSON_NUMBER.pattern}"'.encode())
_QUOTE = ord('"')


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    amount: msgspec.Raw
    timestamp: Annotated[str, msgspec.Meta(pattern=_TIMESTAMP)]
    # absent (UNSET) and null (None) differ in the body's quotes: see _no_repeated_keys
    transaction_id: (
        Annotated[str, msgspec.Meta(pattern=_TRANSACTION_ID)] | msgspec.UnsetType | None
    ) = msgspec.UNSET


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    transactions: Annotated[list[_Item], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


_decode_item = msgspec.json.Decoder(_Item).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode


class _Refused(Exception):
    pass


def decode_transaction_body(raw: bytes, context: ValidationContext) -> RecordTransaction:
    """The command of a `POST /transactions` body; the models raise what is wrong with it."""
    command = fast_transaction(raw, context)
    if command is None:
        return validate(TransactionRequest, parse_exact_json(raw), context=context).to_command()
    return command


def decode_batch_body(raw: bytes, context: ValidationContext) -> list[RecordTransaction]:
    """The commands of a `POST /transactions/batch` body; the models raise what is wrong."""
    commands = fast_batch(raw, context)
    if commands is None:
        batch = validate(TransactionBatchRequest, parse_exact_json(raw), context=context)
        return batch.to_commands()
    return commands


def fast_transaction(raw: bytes, context: ValidationContext) -> RecordTransaction | None:
    """The command of a valid `POST /transactions` body, or None (the models decide)."""
    try:
        item = _decode_item(raw)
        _no_repeated_keys(raw, [item], keys=0)
        return _command(item, context.latest)
    except (msgspec.MsgspecError, _Refused, ValueError, OverflowError, InvalidOperation):
        return None


def fast_batch(raw: bytes, context: ValidationContext) -> list[RecordTransaction] | None:
    """The commands of a valid `POST /transactions/batch` body, or None (the models decide)."""
    try:
        items = _decode_batch(raw).transactions
        _no_repeated_keys(raw, items, keys=1)
        latest = context.latest
        commands = [_command(item, latest) for item in items]
    except (msgspec.MsgspecError, _Refused, ValueError, OverflowError, InvalidOperation):
        return None
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
    occurred_at = datetime.fromisoformat(item.timestamp).astimezone(UTC)
    if occurred_at > latest:
        raise _Refused
    return RecordTransaction(
        amount=_amount(bytes(item.amount)),
        occurred_at=occurred_at,
        transaction_id=item.transaction_id if isinstance(item.transaction_id, str) else None,
    )


def _amount(token: bytes) -> Decimal:
    if token[0] == _QUOTE:
        if _NUMBER_STRING.fullmatch(token) is None:
            raise _Refused
        token = token[1:-1]
    elif token[0] not in b"-0123456789":  # true, false, null, an object or an array
        raise _Refused
    amount = Decimal(token.decode())
    if not is_valid_amount(amount):
        raise _Refused
    return amount.quantize(CENT)
