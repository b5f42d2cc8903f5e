"""Transactions on the wire, each with its id fixed before its first attempt.

A transaction without a `transaction_id` gets `<prefix>-<n>`: a random 128-bit prefix per
client (so two clients never meet) and a counter (no random read per item). A retry reuses
the same body, so the server counts the transaction once however often it arrives.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from decimal import Decimal

import msgspec

from client.models import Transaction


class WireItem(msgspec.Struct, frozen=True, gc=False):
    """A batch item as the command API reads it (amount and timestamp as strings)."""

    amount: str
    timestamp: str
    transaction_id: str


class TransactionIds:
    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex
        self._next = itertools.count()

    def new(self) -> str:
        return f"{self.prefix}-{next(self._next)}"

    def wire(self, transaction: Transaction) -> WireItem:
        """`transaction` as sent, with its id. A float amount or a naive timestamp is a
        programming error (`TypeError`, `ValueError`): money is never a float, and a time
        without a zone is ambiguous."""
        return WireItem(
            amount=_amount(transaction.amount),
            timestamp=_timestamp(transaction.timestamp),
            transaction_id=transaction.transaction_id or self.new(),
        )


def _amount(amount: object) -> str:
    if isinstance(amount, str):
        return amount
    if isinstance(amount, Decimal):
        return format(amount, "f")  # str() may write an exponent ("1E+3"), which the API refuses
    msg = f"an amount is a Decimal or a decimal string, not {type(amount).__name__}"
    raise TypeError(msg)


def _timestamp(timestamp: object) -> str:
    if isinstance(timestamp, str):
        return timestamp
    if isinstance(timestamp, datetime):
        if timestamp.utcoffset() is None:
            msg = "a timestamp needs a timezone (e.g. datetime.now(UTC))"
            raise ValueError(msg)
        return timestamp.isoformat()
    msg = f"a timestamp is a datetime or an RFC 3339 string, not {type(timestamp).__name__}"
    raise TypeError(msg)
