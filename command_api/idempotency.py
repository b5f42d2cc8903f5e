"""The `Idempotency-Key` request header (IETF httpapi draft "The Idempotency-Key HTTP Header
Field"): an RFC 8941 sf-string holding the transaction id, same character rules as the body's
`transaction_id` (1..64 of [A-Za-z0-9._:-], so no escapes can occur), e.g.
`Idempotency-Key: "order-1"`. It is the id when the body has none; both present and different
is a 422. No HTTP framework in here: errors are pydantic-style error dicts for the 422."""

from __future__ import annotations

import re
from typing import Any

from command_api.models import MAX_POSTED_ID_LENGTH, TRANSACTION_ID_CHARACTER

HEADER = "Idempotency-Key"
_LOCATION = ("header", HEADER)
# The whole header value, surrounding spaces allowed as in RFC 8941; the OpenAPI document
# states the same pattern (`$` there is the end of the value, as `fullmatch` is here).
_KEY = f' *"({TRANSACTION_ID_CHARACTER}{{1,{MAX_POSTED_ID_LENGTH}}})" *'
IDEMPOTENCY_KEY_PATTERN = f"^{_KEY}$"
_KEY_VALUE = re.compile(_KEY)


class IdempotencyKeyError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_error(self) -> dict[str, Any]:
        """A pydantic-style error, for `RequestValidationError`."""
        return {"loc": _LOCATION, "msg": self.message, "type": self.code}


def parse_idempotency_key(value: str) -> str:
    """The key inside a header value `"..."` (surrounding spaces allowed, as in RFC 8941)."""
    match = _KEY_VALUE.fullmatch(value)
    if match is None:
        msg = (
            f"{HEADER} must be a quoted string (RFC 8941) of 1..{MAX_POSTED_ID_LENGTH} "
            f'characters {TRANSACTION_ID_CHARACTER}, e.g. "order-1"'
        )
        raise IdempotencyKeyError("idempotency_key_invalid", msg)
    return match.group(1)


def reconcile(body_id: str | None, key: str) -> str:
    """The transaction id given the body's id and the header's key."""
    if body_id is not None and body_id != key:
        msg = f"{HEADER} {key!r} differs from the body's transaction_id {body_id!r}"
        raise IdempotencyKeyError("idempotency_key_mismatch", msg)
    return key
