"""The contract between the projector (writer) and the query API (reader) of the projection,
beyond the schema in `migrations/`: the bucket resolution, the position notification and what
an occurrence of a transaction id is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from shared.events import TransactionRecorded

SECONDS_PER_MINUTE = 60  # second_buckets hold epoch seconds, minute_buckets second // 60
LONGEST_WINDOW_SECONDS = 3600  # windows read no bucket older than this
ALL_PARTITIONS = -1
"""The partition of a bucket row merged over every partition: the rows folded before buckets
were kept per partition (migration 004), and those the projector's roll-up merged."""

TransactionKey = tuple[str, str]
"""(producer, transaction_id): what identifies a transaction. A producer's ids are its own: the
same id from two producers is two transactions, and both land on one partition (the message
key is the transaction id)."""

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


class Occurrence(NamedTuple):
    """One event carrying a transaction id: its payload, producer and place in the log."""

    partition: int
    offset: int
    amount: Decimal
    occurred_at: datetime
    recorded_at: datetime
    producer: str

    @staticmethod
    def of(partition: int, offset: int, event: TransactionRecorded) -> Occurrence:
        return Occurrence(
            partition, offset, event.amount, event.occurred_at, event.recorded_at, event.producer
        )

    def same_payload(self, other: Occurrence) -> bool:
        """A plain retry, not a conflict: the same amount and event time (Decimal and instant
        equality)."""
        return self.amount == other.amount and self.occurred_at == other.occurred_at
