"""A scripted stand-in for `AIOKafkaProducer` (no I/O), for `KafkaEventPublisher` tests: it
takes whole record batches by `send_batch()` (closed ones only: no record may join a batch the
producer holds), acks at once, later (`release()`), never (a broker gone) or with an error,
and can refuse to start."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    UnknownTopicOrPartitionError,
)

from shared.events import TransactionRecorded


@dataclass
class Metadata:
    partition: int
    offset: int


@dataclass
class FakeCluster:
    topics: dict[str, set[int]] = field(default_factory=dict)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.topics.get(topic)


class FakeClient:
    def __init__(self) -> None:
        self.cluster = FakeCluster()
        self.reachable = True

    async def add_topic(self, topic: str) -> bool:
        self.cluster.topics.setdefault(topic, {0, 1, 2})
        return True

    async def force_metadata_update(self) -> bool:
        return self.reachable


@dataclass
class FakeBatch:
    """A record batch holding at most `capacity` records (a real one holds up to its size in
    bytes, and always takes its first record, however large)."""

    capacity: int
    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    closed: bool = False

    def append(
        self, *, timestamp: None, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> object | None:
        if self.closed or len(self.records) >= self.capacity:
            self.closed = True
            return None
        self.records.append((key, value, headers))
        return object()

    def record_count(self) -> int:
        return len(self.records)

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Acks at once (`mode="ack"`), when the test says (`"hold"`: `release()`), never
    (`"hang"`: broker gone), with `error` (`"fail"`), or refuses to take the records
    (`"refuse"`). Keeps each partition's log: `log[p]` holds (key, value, headers), its index
    is the record's offset."""

    made: ClassVar[list[FakeProducer]] = []
    failing_starts: ClassVar[int] = 0

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.client = FakeClient()
        self.mode = "ack"
        self.error: type[Exception] = NotLeaderForPartitionError
        self.batch_capacity = 1000
        self.log: dict[int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
        self.calls: list[tuple[str, int, int]] = []  # ("send_batch", partition, records)
        self.pending: list[asyncio.Future[Metadata]] = []
        self.held: list[tuple[asyncio.Future[Metadata], Metadata]] = []
        self.drained: asyncio.Event | None = None  # set: send_batch waits for it, as aiokafka
        self.waiting: dict[int, int] = {}  # waits for the partition's previous batch to drain
        self.most_waiting = 0
        self.stopped = False
        FakeProducer.made.append(self)

    async def start(self) -> None:
        if FakeProducer.failing_starts > 0:
            FakeProducer.failing_starts -= 1
            raise KafkaConnectionError("Unable to bootstrap")

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        partitions = self.client.cluster.partitions_for_topic(topic)
        if partitions is None:
            raise UnknownTopicOrPartitionError
        return partitions

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_capacity)

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Metadata]:
        assert batch.closed, "a record batch must be closed before the producer takes it"
        if self.drained is not None:
            self.waiting[partition] = self.waiting.get(partition, 0) + 1
            self.most_waiting = max(self.most_waiting, self.waiting[partition])
            await self.drained.wait()
            self.waiting[partition] -= 1
        return self._append("send_batch", topic, partition, batch.records)

    def _append(
        self,
        call: str,
        topic: str,
        partition: int,
        records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
    ) -> asyncio.Future[Metadata]:
        if self.mode == "refuse":
            raise KafkaTimeoutError
        assert partition in (self.client.cluster.partitions_for_topic(topic) or ())
        log = self.log.setdefault(partition, [])
        base = len(log)
        log.extend(records)
        self.calls.append((call, partition, len(records)))
        ack: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        if self.mode == "ack":
            ack.set_result(Metadata(partition=partition, offset=base))
        elif self.mode == "hold":
            self.held.append((ack, Metadata(partition=partition, offset=base)))
        elif self.mode == "fail":
            ack.set_exception(self.error())
        else:
            self.pending.append(ack)
        return ack

    def release(self) -> None:
        """Acknowledge every held batch."""
        held, self.held = self.held, []
        for ack, metadata in held:
            if not ack.done():
                ack.set_result(metadata)


def event(transaction_id: str = "t-1") -> TransactionRecorded:
    now = datetime.now(UTC)
    return TransactionRecorded(
        event_id=uuid.uuid4(),
        transaction_id=transaction_id,
        amount=Decimal("4.20"),
        occurred_at=now,
        recorded_at=now,
        producer="p",
    )
