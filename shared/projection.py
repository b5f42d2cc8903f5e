"""The contract between the projector (writer) and the query API (reader) of the projection,
beyond the schema in `migrations/`: the bucket resolution and the position notification."""

from __future__ import annotations

import json
from collections.abc import Mapping

SECONDS_PER_MINUTE = 60  # second_buckets hold epoch seconds, minute_buckets second // 60

NOTIFY_CHANNEL = "projection_advanced"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_NOTIFY_PAYLOAD = 7900


def encode_position(version: int, offsets: Mapping[int, int]) -> str:
    """`{"version": v, "offsets": {"<partition>": next_offset}}`; with too many partitions to
    fit, only the version (readers then reload the offsets from the table)."""
    payload = json.dumps({"version": version, "offsets": {str(p): o for p, o in offsets.items()}})
    if len(payload) < MAX_NOTIFY_PAYLOAD:
        return payload
    return json.dumps({"version": version})


def decode_position(payload: str) -> tuple[int, dict[int, int]] | None:
    """The version and offsets of a notification, or None when it carries no offsets or is
    not one we understand (the reader reloads then)."""
    try:
        data = json.loads(payload)
        version = data["version"]
        offsets = {int(p): int(o) for p, o in data["offsets"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(version, int) or isinstance(version, bool):
        return None
    return version, offsets
