"""A scripted stand-in for `AIOKafkaProducer` (no I/O), for `KafkaEventPublisher` tests: it
acks at once, never (a broker gone) or with an error, and can refuse to start."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError

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


class FakeProducer:
    """Acks at once (`mode="ack"`), never (`"hang"`: broker gone), or with an error."""

    made: ClassVar[list[FakeProducer]] = []
    failing_starts: ClassVar[int] = 0

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.client = FakeClient()
        self.mode = "ack"
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.pending: list[asyncio.Future[Metadata]] = []
        self.stopped = False
        FakeProducer.made.append(self)

    async def start(self) -> None:
        if FakeProducer.failing_starts > 0:
            FakeProducer.failing_starts -= 1
            raise KafkaConnectionError("Unable to bootstrap")

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Metadata]:
        if self.mode == "refuse":
            raise KafkaTimeoutError
        self.sent.append((topic, key, value, headers))
        ack: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        if self.mode == "ack":
            ack.set_result(Metadata(partition=len(key) % 3, offset=len(self.sent) - 1))
        elif self.mode == "fail":
            ack.set_exception(NotLeaderForPartitionError())
        else:
            self.pending.append(ack)
        return ack


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
