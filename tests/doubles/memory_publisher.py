"""`InMemoryEventPublisher`: the event log as Python lists, for tests.

Same contract as the Kafka adapter: one position per event, in order; the partition Kafka's
default partitioner gives the key; offsets counted per partition from 0. Set `failure` to
make publishes fail.
"""

from __future__ import annotations

from collections.abc import Sequence

from command_api.ports import EventLogNotReadyError, Position, PublishFailedError
from shared.events import TransactionRecorded, deserialize
from shared.partitioner import partition_of


class InMemoryEventPublisher:
    def __init__(self, *, partitions: int = 6) -> None:
        if partitions < 1:
            msg = "partitions must be >= 1"
            raise ValueError(msg)
        self.partitions = partitions
        self.log: dict[int, list[TransactionRecorded]] = {p: [] for p in range(partitions)}
        self.appended: list[tuple[Position, TransactionRecorded]] = []
        self.failure: PublishFailedError | None = None
        self.ready = True

    def partition_for(self, key: bytes) -> int:
        return partition_of(key, self.partitions)

    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        if self.failure is not None:
            raise self.failure
        positions = []
        for event in events:
            partition = self.partition_for(event.key)
            position = Position(partition, len(self.log[partition]))
            self.log[partition].append(event)
            self.appended.append((position, event))
            positions.append(position)
        return positions

    async def publish_serialized(
        self, keys: Sequence[bytes], values: Sequence[bytes]
    ) -> list[Position]:
        events = [deserialize(value) for value in values]
        if [event.key for event in events] != list(keys):
            msg = "a key is not its event's transaction id"
            raise ValueError(msg)
        return await self.publish(events)

    async def check_ready(self) -> None:
        if not self.ready:
            msg = "the in-memory log is marked as not ready"
            raise EventLogNotReadyError(msg)

    @property
    def events(self) -> list[TransactionRecorded]:
        return [event for _, event in self.appended]
