"""The fast companion of tests/faults/test_broker_outage.py (which is `slow`): what the
broker outage revealed, pinned without a broker. After an outage aiokafka's idempotent
producer can be left with a sequence state the broker refuses (`OutOfOrderSequenceNumber` on
every later batch); the publisher must then replace it rather than answer 503 forever."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber, UnknownProducerId

from command_api.adapters.kafka_publisher import KafkaEventPublisher
from command_api.ports import PublishFailedError
from shared.settings import CommandSettings, KafkaSettings
from tests.unit.fake_producer import FakeProducer, event


@pytest.fixture
def publisher() -> KafkaEventPublisher:
    FakeProducer.made = []
    FakeProducer.failing_starts = 0
    return KafkaEventPublisher(
        KafkaSettings(bootstrap_servers="broker:9092", topic="tx.test"),
        CommandSettings(publish_timeout_seconds=0.5, producer_linger_ms=2),
        create_topic=False,
        producer_factory=FakeProducer,
    )


@pytest.mark.parametrize("error", [OutOfOrderSequenceNumber, UnknownProducerId])
async def test_a_producer_with_a_broken_sequence_is_replaced(
    publisher: KafkaEventPublisher, error: type[Exception]
) -> None:
    await publisher.start()
    [broken] = FakeProducer.made
    broken.mode, broken.error = "fail", error

    with pytest.raises(PublishFailedError) as raised:
        await publisher.publish([event("a")])
    assert raised.value.reason == "rejected"

    async with asyncio.timeout(5):
        while not publisher.connected:  # replaced in the background
            await asyncio.sleep(0.05)
    assert len(FakeProducer.made) == 2
    assert broken.stopped
    assert len(await publisher.publish([event("b")])) == 1  # accepted again, no restart
    await publisher.stop()


async def test_an_ordinary_broker_error_keeps_the_producer(
    publisher: KafkaEventPublisher,
) -> None:
    await publisher.start()
    [producer] = FakeProducer.made
    producer.mode = "fail"  # NotLeaderForPartition: aiokafka recovers from that by itself
    with pytest.raises(PublishFailedError):
        await publisher.publish([event("a")])
    producer.mode = "ack"
    assert len(await publisher.publish([event("b")])) == 1
    assert FakeProducer.made == [producer]
    await publisher.stop()
