"""Positions in the log, per partition."""

from __future__ import annotations

from collections.abc import Iterable


def highest_offsets(
    pairs: Iterable[tuple[int, int]], into: dict[int, int] | None = None
) -> dict[int, int]:
    """Per partition, the highest offset among `(partition, offset)` pairs and what `into`
    already holds (updated in place and returned; a new dict when not given)."""
    highest = {} if into is None else into
    for partition, offset in pairs:
        if offset > highest.get(partition, -1):
            highest[partition] = offset
    return highest
