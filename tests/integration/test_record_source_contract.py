"""One contract, two record sources: the in-memory fake and Kafka must behave the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from projector.adapters.kafka_source import KafkaRecordSource
from projector.ports import Fetched, RecordSource
from shared.settings import KafkaSettings, ProjectorSettings
from tests.doubles.memory_source import InMemoryRecordSource
from tests.integration.conftest import TopicFactory

PARTITIONS = 3
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


class Log(Protocol):
    """A source under test, and how a test writes to and inspects its log."""

    async def source(self, *, group: bool) -> RecordSource: ...

    async def append(self, partition: int, value: bytes, *, timestamp: datetime) -> None: ...

    async def committed(self) -> dict[int, int]: ...


class MemoryLog:
    def __init__(self) -> None:
        self._source = InMemoryRecordSource(PARTITIONS)

    async def source(self, *, group: bool) -> RecordSource:
        return self._source

    async def append(self, partition: int, value: bytes, *, timestamp: datetime) -> None:
        self._source.append(partition, value, timestamp=timestamp)

    async def committed(self) -> dict[int, int]:
        return dict(self._source.committed)


class KafkaLog:
    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.settings = ProjectorSettings(group_id=f"contract-{uuid.uuid4().hex[:8]}")
        self.producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        self.sources: list[KafkaRecordSource] = []
        self._closing: list[object] = []

    async def source(self, *, group: bool) -> RecordSource:
        manager = KafkaRecordSource.started(self.kafka, self.settings, group=group)
        source = await manager.__aenter__()
        self._closing.append(manager)
        self.sources.append(source)
        return source

    async def connect_all(self) -> None:
        for source in self.sources:
            await source.connect()

    async def append(self, partition: int, value: bytes, *, timestamp: datetime) -> None:
        await self.producer.send_and_wait(
            self.kafka.topic,
            value,
            partition=partition,
            timestamp_ms=int(timestamp.timestamp() * 1000),
        )

    async def committed(self) -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap_servers)
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(self.settings.group_id)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def close(self) -> None:
        for manager in reversed(self._closing):
            await manager.__aexit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture(params=["memory", "kafka"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[Log]:
    if request.param == "memory":
        yield MemoryLog()
        return
    factory: TopicFactory = request.getfixturevalue("kafka_settings")
    kafka_log = KafkaLog(await factory(PARTITIONS))
    await kafka_log.producer.start()
    try:
        yield kafka_log
    finally:
        await kafka_log.producer.stop()
        await kafka_log.close()


async def opened(log: Log, *, group: bool = False) -> RecordSource:
    source = await log.source(group=group)
    if isinstance(log, KafkaLog):
        if group:
            return source  # subscribed first, connected by the test
        await log.connect_all()
    return source


async def fetch_all(source: RecordSource, count: int) -> dict[int, list[tuple[int, bytes]]]:
    """Fetch until `count` records came back (the first fetches may find none yet)."""
    got: dict[int, list[tuple[int, bytes]]] = {}
    for _ in range(100):
        fetched: Fetched = await source.fetch(timeout_ms=200, max_records=1000)
        for partition, records in fetched.records.items():
            got.setdefault(partition, []).extend((r.offset, r.value or b"") for r in records)
        if sum(map(len, got.values())) >= count:
            return got
    raise AssertionError(f"only {got} of {count} records")


async def test_records_come_in_offset_order_from_where_a_partition_is_sought(log: Log) -> None:
    for i in range(4):
        await log.append(0, b"a%d" % i, timestamp=T0)
    await log.append(2, b"c0", timestamp=T0)
    source = await opened(log)
    assert await source.partitions() == [0, 1, 2]
    source.assign([0, 2])
    assert source.assignment() == [0, 2]
    source.seek(0, 1)
    source.seek(2, 0)
    got = await fetch_all(source, 4)
    assert got == {0: [(1, b"a1"), (2, b"a2"), (3, b"a3")], 2: [(0, b"c0")]}
    source.seek(0, 3)  # back again: read once more
    assert await fetch_all(source, 1) == {0: [(3, b"a3")]}


async def test_a_fetch_reports_the_log_end_and_caps_the_count(log: Log) -> None:
    for i in range(5):
        await log.append(1, b"b%d" % i, timestamp=T0)
    source = await opened(log)
    source.assign([1])
    source.seek(1, 0)
    first = None
    for _ in range(100):
        first = await source.fetch(timeout_ms=200, max_records=2)
        if first.records:
            break
    assert first is not None
    assert [r.offset for r in first.records[1]] == [0, 1]
    assert first.log_end == {1: 5}


async def test_an_empty_fetch_returns_nothing_after_its_timeout(log: Log) -> None:
    source = await opened(log)
    source.assign([0])
    source.seek(0, 0)
    assert (await source.fetch(timeout_ms=50, max_records=10)).records == {}


async def test_end_offsets_and_offsets_at_a_time(log: Log) -> None:
    for i in range(3):
        await log.append(0, b"x", timestamp=T0 + timedelta(seconds=i * 10))
    source = await opened(log)
    partitions = [0, 1]
    assert await source.end_offsets(partitions) == {0: 3, 1: 0}
    assert await source.offsets_at(T0 + timedelta(seconds=5), partitions) == {0: 1, 1: 0}
    assert await source.offsets_at(T0 + timedelta(seconds=99), partitions) == {0: 3, 1: 0}


class Handler:
    def __init__(self, source: RecordSource) -> None:
        self.source = source
        self.calls: list[tuple[str, list[int]]] = []

    async def partitions_revoked(self, partitions: Sequence[int]) -> None:
        self.calls.append(("revoked", sorted(partitions)))

    async def partitions_assigned(self, partitions: Sequence[int]) -> None:
        self.calls.append(("assigned", sorted(partitions)))
        for partition in partitions:
            self.source.seek(partition, 1)


async def test_a_group_member_hears_its_assignment_and_commits_for_monitoring(log: Log) -> None:
    for partition in range(PARTITIONS):
        for _ in range(2):
            await log.append(partition, b"v", timestamp=T0)
    source = await opened(log, group=True)
    handler = Handler(source)
    source.subscribe(handler)
    if isinstance(log, KafkaLog):
        await log.connect_all()
    got = await fetch_all(source, PARTITIONS)  # seeked to 1 on assignment: one record each
    assert handler.calls[:2] == [("revoked", []), ("assigned", [0, 1, 2])]
    assert got == {p: [(1, b"v")] for p in range(PARTITIONS)}
    assert source.assignment() == [0, 1, 2]
    await source.commit_offsets({0: 2, 1: 2, 2: 2})
    assert await log.committed() == {0: 2, 1: 2, 2: 2}


async def test_commit_offsets_outside_a_group_does_nothing(log: Log) -> None:
    source = await opened(log)
    source.assign([0])
    await source.commit_offsets({0: 5})
    assert await log.committed() == {}
