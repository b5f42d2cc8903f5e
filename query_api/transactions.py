"""The fate of one transaction, for its producer: counted (with its duplicates and conflicts)
or not found as of the projection's offsets. No HTTP, no driver here.

A token sees its own transactions (the counted occurrence's producer is its subject) unless
it may read any; anything else looks exactly like an id that was never folded, so ids of
other producers cannot be probed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from query_api.errors import ConsistencyTimeoutError, InvalidQueryError
from query_api.ports import (
    Clock,
    PartitionPosition,
    ProjectionReader,
    StatsMetrics,
    TransactionLookup,
    TransactionRecord,
)
from query_api.position_board import PositionBoard
from query_api.services import MAX_WAIT_MS
from shared.consistency import InvalidConsistencyToken, decode_token, is_covered


@dataclass(frozen=True, slots=True)
class TransactionView:
    transaction_id: str
    record: TransactionRecord | None  # None: not found (or not this token's to see)
    version: int
    positions: tuple[PartitionPosition, ...]
    read_at: float


class TransactionService:
    def __init__(
        self,
        *,
        reader: ProjectionReader,
        board: PositionBoard,
        clock: Clock,
        metrics: StatsMetrics,
        default_wait_ms: int,
    ) -> None:
        self._reader = reader
        self._board = board
        self._clock = clock
        self._metrics = metrics
        self._default_wait_ms = default_wait_ms

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
            try:
                token = decode_token(consistency_token)
            except InvalidConsistencyToken as err:
                raise InvalidQueryError("consistency_token", str(err)) from err
            wait = self._default_wait_ms if wait_ms is None else wait_ms
            if not 0 <= wait <= MAX_WAIT_MS:
                raise InvalidQueryError("wait_ms", f"wait_ms must be 0..{MAX_WAIT_MS}")
            lookup = await self._read_covering(transaction_id, token, wait / 1000)
        record = lookup.record
        visible = record is not None and (
            producer is None or (record.counted is not None and record.counted.producer == producer)
        )
        if not visible:
            record = None
        return TransactionView(
            transaction_id, record, lookup.version, lookup.positions, self._clock()
        )

    async def _read_covering(
        self, transaction_id: str, token: dict[int, int], wait: float
    ) -> TransactionLookup:
        """Read until a read covers `token`, waiting on the board between reads (the same
        protocol as the stats service: no database polling per waiting request)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + wait
        while True:
            lookup = await self._reader.transaction(transaction_id)
            if is_covered(token, lookup.position.offsets):
                self._board.observe(lookup.position)
                self._metrics.consistency_wait("hit", loop.time() - started)
                return lookup
            if self._board.covers(token):
                self._board.replace(lookup.position)  # the database is the truth
            else:
                self._board.observe(lookup.position)
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    await self._board.wait_until_covers(token)
            except TimeoutError as err:
                self._metrics.consistency_wait("timeout", loop.time() - started)
                msg = f"The projection did not reach the token's position within {wait:g} s."
                raise ConsistencyTimeoutError(msg) from err
