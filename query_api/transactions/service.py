"""The fate of one transaction, for its producer: counted (with its duplicates and conflicts)
or not found as of the projection's offsets. No HTTP, no driver here.

A token sees its own transactions (the counted occurrence's producer is its subject) unless
it may read any; anything else looks exactly like an id that was never folded, so ids of
other producers cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass

from query_api.consistency import ConsistentReads
from query_api.ports import Clock, PartitionPosition, ProjectionReader, TransactionRecord


@dataclass(frozen=True, slots=True)
class TransactionView:
    transaction_id: str
    record: TransactionRecord | None  # None: not found (or not this token's to see)
    version: int
    positions: tuple[PartitionPosition, ...]
    read_at: float


class TransactionStatusService:
    def __init__(
        self,
        *,
        reader: ProjectionReader,
        consistent: ConsistentReads,
        clock: Clock,
    ) -> None:
        self._reader = reader
        self._consistent = consistent
        self._clock = clock

    async def lookup(
        self,
        *,
        transaction_id: str,
        producer: str | None,
        consistency_token: str | None = None,
        wait_ms: int | None = None,
    ) -> TransactionView:
        """One primary-key read of `transaction_id`, visible only when `producer` (None: any)
        produced its counted occurrence; with a consistency token, from a projection that
        covers it (waiting up to `wait_ms`)."""
        if consistency_token is None:
            lookup = await self._reader.transaction(transaction_id)
        else:
            wait = self._consistent.accept(consistency_token, wait_ms)
            lookup = await self._consistent.read(
                wait, lambda: self._reader.transaction(transaction_id), lambda found: found.position
            )
        record = lookup.record
        visible = record is not None and (
            producer is None or (record.counted is not None and record.counted.producer == producer)
        )
        if not visible:
            record = None
        return TransactionView(
            transaction_id, record, lookup.version, lookup.positions, self._clock()
        )
