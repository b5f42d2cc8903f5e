"""Consistency tokens, as far as a client needs them: the highest of several.

A token (`v1.<partition>-<offset>[.<partition>-<offset>...]`) names, per partition, the last
offset a write appended; a read given it waits until the projection covers every named
position. The format is the server's (its `shared/consistency.py`); this package does not
import the server, so it re-implements only the merge, and a test holds it to the server's
decoder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PREFIX = "v1"
_POSITION = re.compile(r"([0-9]{1,6})-([0-9]{1,19})")


class InvalidTokenError(ValueError):
    """Not a consistency token the service issues."""


def _positions(token: str) -> Iterable[tuple[int, int]]:
    prefix, _, rest = token.partition(".")
    if prefix != _PREFIX or not rest:
        msg = f"not a consistency token: {token[:40]!r}"
        raise InvalidTokenError(msg)
    for part in rest.split("."):
        match = _POSITION.fullmatch(part)
        if match is None:
            msg = f"malformed position {part[:40]!r} in a consistency token"
            raise InvalidTokenError(msg)
        yield int(match.group(1)), int(match.group(2))


def merge_tokens(tokens: Iterable[str]) -> str | None:
    """One token covering all of `tokens` (per partition the highest offset), or None when
    there is none. A read given it sees every write the tokens came from."""
    tracker = TokenTracker()
    for token in tokens:
        tracker.add(token)
    return tracker.token


class TokenTracker:
    """The highest token over many receipts, kept as it goes (`record_many`'s outcomes repeat
    their batch's token: each distinct one is read once)."""

    def __init__(self) -> None:
        self._highest: dict[int, int] = {}
        self._last: str | None = None

    def add(self, token: str) -> None:
        if token == self._last:
            return
        self._last = token
        for partition, offset in _positions(token):
            if offset > self._highest.get(partition, -1):
                self._highest[partition] = offset

    @property
    def token(self) -> str | None:
        """The token covering everything added so far (None before the first)."""
        if not self._highest:
            return None
        return ".".join([_PREFIX, *(f"{p}-{o}" for p, o in sorted(self._highest.items()))])
