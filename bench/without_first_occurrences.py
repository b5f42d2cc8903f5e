"""`python -m bench.without_first_occurrences`: the projector's live fold (`python -m projector
run`, same configuration) with a store that keeps no first occurrences, for the bench's row
on what keeping them costs (bench/scenarios/fold.py).

Bench only, never a production setting: without the first occurrences a repeated id would be
counted again, status lookups would find nothing and conflicts would go unseen. The bench's
log holds distinct ids, so the totals stay exact and the run is checked like the others. The
composition root builds this store instead of `PostgresProjectionStore`; nothing else
changes. What the pure fold spends building the columns of first occurrences still counts
(it is part of every batch), so the row's cost is the store's part of it: the rows sent, the
COPY, the INSERT and its unique index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import projector.main
from projector.__main__ import main
from projector.adapters.postgres_store import (
    PostgresProjectionStore,
    PostgresProjectionTransaction,
    refused_or_unavailable_on_failure,
)
from projector.fold import FirstColumns
from shared.projection import TransactionKey


class _TransactionWithoutFirst(PostgresProjectionTransaction):
    async def insert_first_occurrences(
        self, first: FirstColumns, *, legacy_ids: bool
    ) -> set[TransactionKey]:
        return set()  # nothing stored, so nothing was stored before


class StoreWithoutFirstOccurrences(PostgresProjectionStore):
    @asynccontextmanager
    async def transaction(self, version: int) -> AsyncIterator[PostgresProjectionTransaction]:
        with refused_or_unavailable_on_failure():
            async with self._pool.acquire() as conn, conn.transaction():
                yield _TransactionWithoutFirst(conn, version)


if __name__ == "__main__":
    projector.main.PostgresProjectionStore = StoreWithoutFirstOccurrences  # type: ignore[attr-defined]
    raise SystemExit(main(["run"]))
