"""Gathering a batch: records fetched from the source and decoded, up to `max_batch`, with
their fold worked out, all while the previous batch commits.

A batch is gathered from fetches of at most FETCH_SLICE records, decoded DECODE_SLICE at a
time, yielding to the event loop in between: the commit in flight sends each next statement
only when the loop runs it, and a fetch parses all its records in one go (aiokafka), so a large
fetch or decode would hold every one of a commit's small statements waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from projector.batch import Batch
from projector.errors import SourceUnavailable
from projector.ports import RecordSource
from projector.positions import Positions, reaches
from projector.records import ConsumedRecord, decode

FETCH_SLICE = 1000
DECODE_SLICE = 250


@dataclass(frozen=True, slots=True)
class Gathered:
    generation: int  # the seek generation the records were read in
    batch: Batch
    seconds: float  # spent decoding and folding


class Gatherer:
    def __init__(
        self, *, source: RecordSource, positions: Positions, max_batch: int, poll_timeout_ms: int
    ) -> None:
        self._source = source
        self._positions = positions
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms

    async def gather(self, until: Mapping[int, int] | None) -> Gathered | None:
        """Fetch and decode up to `max_batch` records (with `until`: none at or past it); the
        first fetch waits up to the poll timeout, the next ones take only what has arrived.
        None when nothing is left to fold. A seek while gathering (a failed commit, a
        rebalance) stops it: that batch is then dropped. A fetch that fails after the first
        one ends the batch with what it has."""
        positions = self._positions
        fetched = await self._source.fetch(
            timeout_ms=self._poll_timeout_ms, max_records=min(FETCH_SLICE, self._max_batch)
        )
        generation = positions.generation
        records: list[ConsumedRecord] = []
        log_end: dict[int, int] = {}
        reached = dict(positions.next_offsets)
        seconds = 0.0
        while fetched.records:
            for partition, messages in fetched.records.items():
                for at in range(0, len(messages), DECODE_SLICE):
                    started = time.perf_counter()
                    records += [
                        decode(partition, m.offset, m.value)
                        for m in messages[at : at + DECODE_SLICE]
                    ]
                    seconds += time.perf_counter() - started
                    await asyncio.sleep(0)
                log_end[partition] = fetched.log_end.get(partition, 0)
                reached[partition] = messages[-1].offset + 1
            room = self._max_batch - len(records)
            if room <= 0 or positions.generation != generation or reaches(reached, until):
                break
            try:
                fetched = await self._source.fetch(timeout_ms=0, max_records=min(FETCH_SLICE, room))
            except SourceUnavailable:
                break
        started = time.perf_counter()
        if until is not None:
            records = [r for r in records if r.offset < until.get(r.partition, 0)]
        if not records:
            return None
        batch = Batch(records=records, log_end_offsets=log_end)
        batch.fold()  # what the commit folds, worked out while the previous batch commits
        return Gathered(generation, batch, seconds + time.perf_counter() - started)
