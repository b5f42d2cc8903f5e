"""One contract, two adapters: the in-memory publisher the unit tests use behaves like the
Kafka one (order, one position per event, key -> Kafka's default partition, offsets per
partition); and each position the Kafka one reports holds its event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from command_api.adapters.kafka_publisher import KafkaEventPublisher
from command_api.ports import EventPublisher, Position
from shared.events import TransactionRecorded, deserialize, serialize
from shared.partitioner import partition_of
from shared.settings import CommandSettings
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.integration.command_support import read_all
from tests.integration.conftest import TopicFactory


def event(transaction_id: str, amount: str = "1.00") -> TransactionRecorded:
    now = datetime.now(UTC)
    return TransactionRecorded(
        event_id=uuid.uuid4(),
        transaction_id=transaction_id,
        amount=Decimal(amount),
        occurred_at=now,
        recorded_at=now,
        producer="contract",
    )


@pytest.fixture(params=["memory", "kafka"])
async def publisher(
    request: pytest.FixtureRequest, kafka_settings: TopicFactory
) -> AsyncIterator[EventPublisher]:
    if request.param == "memory":
        yield InMemoryEventPublisher(partitions=6)
        return
    kafka = KafkaEventPublisher(
        await kafka_settings(partitions=6),
        CommandSettings(publish_timeout_seconds=5, producer_linger_ms=2),
        create_topic=False,
    )
    await kafka.start()
    assert kafka.connected
    try:
        yield kafka
    finally:
        await kafka.stop()


async def test_one_position_per_event_in_order(publisher: EventPublisher) -> None:
    events = [event(f"c-{i}") for i in range(60)]
    positions = await publisher.publish(events)

    assert len(positions) == 60
    assert len(set(positions)) == 60
    per_partition: dict[int, list[int]] = {}
    for position in positions:
        per_partition.setdefault(position.partition, []).append(position.offset)
    for offsets in per_partition.values():  # a fresh log: 0, 1, 2, ... in send order
        assert offsets == list(range(len(offsets)))
    assert len(per_partition) > 1
    assert all(0 <= partition < 6 for partition in per_partition)


async def test_serialized_events_are_published_as_the_events(publisher: EventPublisher) -> None:
    """`publish_serialized` (the batch path's) keeps `publish`'s promise: one position per
    event, in order, each in its key's partition, offsets counting on from the events before."""
    events = [event(f"z-{i}") for i in range(40)]
    first = await publisher.publish(events[:20])
    serialized = await publisher.publish_serialized(
        [e.key for e in events[20:]], [serialize(e) for e in events[20:]]
    )
    assert [p.partition for p in first + serialized] == [partition_of(e.key, 6) for e in events]
    last: dict[int, int] = {}
    for position in first + serialized:
        assert position.offset > last.get(position.partition, -1)
        last[position.partition] = position.offset


async def test_a_key_goes_to_kafkas_default_partition(publisher: EventPublisher) -> None:
    events = [event(f"k-{i}") for i in range(40)]
    positions = await publisher.publish(events)
    assert [p.partition for p in positions] == [partition_of(e.key, 6) for e in events]


async def test_each_reported_position_holds_its_event(kafka_settings: TopicFactory) -> None:
    settings = await kafka_settings(partitions=6)
    kafka = KafkaEventPublisher(
        settings, CommandSettings(publish_timeout_seconds=5), create_topic=False
    )
    await kafka.start()
    try:
        events = [event(f"r-{i}", f"{i + 1}.00") for i in range(1500)]  # ~250 a partition
        batch = await kafka.publish(events)
        single = await asyncio.gather(*(kafka.publish([e]) for e in events[:20]))
    finally:
        await kafka.stop()
    expected = dict(zip(batch + [p for [p] in single], events + events[:20], strict=True))
    stored = {
        Position(r.partition, r.offset): deserialize(r.value) for r in await read_all(settings)
    }
    assert stored == expected


async def test_concurrent_publishes_sharing_record_batches_each_land_where_reported(
    kafka_settings: TopicFactory,
) -> None:
    """Single events and batches published at once share each partition's record batches:
    every position still names the record holding that very event."""
    settings = await kafka_settings(partitions=6)
    kafka = KafkaEventPublisher(
        settings, CommandSettings(publish_timeout_seconds=10), create_topic=False
    )
    await kafka.start()
    try:
        singles = [event(f"s-{i}", f"{i % 97 + 1}.00") for i in range(300)]
        batches = [[event(f"b{n}-{i}", "3.00") for i in range(400)] for n in range(3)]
        published = await asyncio.gather(
            *(kafka.publish([e]) for e in singles), *(kafka.publish(b) for b in batches)
        )
    finally:
        await kafka.stop()
    sent = singles + [e for b in batches for e in b]
    reported = [p for positions in published for p in positions]
    stored = {
        Position(r.partition, r.offset): deserialize(r.value) for r in await read_all(settings)
    }
    assert stored == dict(zip(reported, sent, strict=True))


async def test_a_key_always_maps_to_one_partition(publisher: EventPublisher) -> None:
    first = await publisher.publish([event("same"), event("other"), event("same")])
    second = await publisher.publish([event("same")])
    assert first[0].partition == first[2].partition == second[0].partition
    assert [first[0].offset, first[2].offset, second[0].offset] == sorted(
        [first[0].offset, first[2].offset, second[0].offset]
    )


async def test_nothing_to_publish_is_no_position(publisher: EventPublisher) -> None:
    assert await publisher.publish([]) == []


async def test_ready(publisher: EventPublisher) -> None:
    await publisher.check_ready()
