"""The fate of one transaction, for its producer: counted (with its duplicates and conflicts)
or not found as of the projection's offsets. No HTTP, no driver here.

A producer's ids are its own: a reader looks up its own transaction, (its subject, the id);
only a reader that may read any names another producer. An id stored before producers were
recorded (its counted occurrence unknown) is shown to such readers only. Whatever a reader may
not see looks exactly like an id that was never folded, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass

from query_api.consistency import ConsistentReads
from query_api.ports import Clock, PartitionPosition, ProjectionReader, TransactionRecord
from shared.auth import SCOPE_TRANSACTIONS_READ_ANY, PermissionDeniedError


@dataclass(frozen=True, slots=True)
class TransactionView:
    transaction_id: str
    record: TransactionRecord | None  # None: not found (or not this token's to see)
    version: int
    positions: tuple[PartitionPosition, ...]
    read_at: float


def whose(*, subject: str, sees_any: bool, producer: str | None) -> str:
    """The producer whose transaction a reader looks up: its own (`subject`) unless it names
    another, which only a reader that may read any does."""
    if producer is None or producer == subject:
        return subject
    if not sees_any:
        msg = f"Only a token with the scope {SCOPE_TRANSACTIONS_READ_ANY!r} may name a producer."
        raise PermissionDeniedError(msg)
    return producer


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
        subject: str,
        sees_any: bool,
        producer: str | None = None,
        consistency_token: str | None = None,
        wait_ms: int | None = None,
    ) -> TransactionView:
        """One primary-key read of the transaction (`whose` producer, `transaction_id`); with a
        consistency token, from a projection that covers it (waiting up to `wait_ms`)."""
        owner = whose(subject=subject, sees_any=sees_any, producer=producer)
        if consistency_token is None:
            lookup = await self._reader.transaction(owner, transaction_id)
        else:
            wait = self._consistent.accept(consistency_token, wait_ms)
            lookup = await self._consistent.read(
                wait,
                lambda: self._reader.transaction(owner, transaction_id),
                lambda found: found.position,
            )
        record = lookup.record
        if record is not None and record.counted is None and not sees_any:
            record = None
        return TransactionView(
            transaction_id, record, lookup.version, lookup.positions, self._clock()
        )
