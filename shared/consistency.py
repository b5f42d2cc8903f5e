"""Consistency tokens: the log positions a write produced, handed back to the read side.

A token names, per partition, the offset of the last event a POST appended, as
`v1.<partition>-<offset>[.<partition>-<offset>...]`. The projection covers it once its stored
next offset for every named partition is greater than the named offset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.offsets import highest_offsets

_PREFIX = "v1"
_POSITION_GRAMMAR = "([0-9]{1,6})-([0-9]{1,19})"  # ASCII digits only, nothing after
_POSITION = re.compile(_POSITION_GRAMMAR)
MAX_PARTITIONS_IN_TOKEN = 1000
# Every token `decode_token` accepts, as the OpenAPI documents state it.
TOKEN_PATTERN = rf"^{_PREFIX}(?:\.{_POSITION_GRAMMAR}){{1,{MAX_PARTITIONS_IN_TOKEN}}}$"


class InvalidConsistencyToken(ValueError):
    """The token is not one this service issued."""


def encode_token(positions: Mapping[int, int]) -> str:
    """Encode `{partition: offset}` (the highest offset written per partition)."""
    if not positions:
        msg = "a consistency token needs at least one position"
        raise ValueError(msg)
    parts = [f"{partition}-{offset}" for partition, offset in sorted(positions.items())]
    return ".".join([_PREFIX, *parts])


def decode_token(token: str) -> dict[int, int]:
    prefix, _, rest = token.partition(".")
    if prefix != _PREFIX or not rest:
        msg = "unknown consistency token format"
        raise InvalidConsistencyToken(msg)
    parts = rest.split(".")
    if len(parts) > MAX_PARTITIONS_IN_TOKEN:
        msg = "consistency token names too many partitions"
        raise InvalidConsistencyToken(msg)
    positions: list[tuple[int, int]] = []
    for part in parts:
        match = _POSITION.fullmatch(part)
        if match is None:
            msg = "malformed position in consistency token"
            raise InvalidConsistencyToken(msg)
        positions.append((int(match.group(1)), int(match.group(2))))
    return highest_offsets(positions)


def is_covered(token: Mapping[int, int], next_offsets: Mapping[int, int]) -> bool:
    """True when the projection's stored next offsets are past every position in the token."""
    return all(next_offsets.get(partition, 0) > offset for partition, offset in token.items())
