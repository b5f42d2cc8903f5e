"""Every Kafka client of ours speaks SASL when told to: against a private broker whose listener
requires SASL/PLAIN, the admin client creates the topic, the command API's publisher writes an
event with acks=all, and the projector's consumer reads it back, each with its own user; a
wrong password gets nothing in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from command_api.adapters.kafka_publisher import KafkaEventPublisher
from projector.adapters.kafka_source import kafka_consumer
from shared.events import TransactionRecorded, deserialize
from shared.settings import CommandSettings, KafkaSettings, ProjectorSettings
from shared.topic import ensure_topic
from tests.faults import harness


@pytest.fixture(scope="module")
def sasl_listener() -> Iterator[str]:
    with harness.private_sasl_broker() as address:
        yield address


def as_user(address: str, topic: str, user: str, password: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=address,
        topic=topic,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=user,
        sasl_password=SecretStr(password),
    )


async def test_admin_producer_and_consumer_authenticate_with_sasl_plain(sasl_listener: str) -> None:
    topic = f"sasl.{uuid.uuid4().hex[:12]}"
    command = as_user(
        sasl_listener, topic, "txstats-command", harness.SASL_USERS["txstats-command"]
    )
    publisher = KafkaEventPublisher(command, CommandSettings())  # ensures the topic: admin client
    now = datetime.now(UTC)
    sent = TransactionRecorded(uuid.uuid4(), "sasl-1", Decimal("12.34"), now, now, "producer")
    await publisher.start()
    try:
        assert publisher.connected
        [position] = await publisher.publish([sent])
    finally:
        await publisher.stop()

    projector = as_user(
        sasl_listener, topic, "txstats-projector", harness.SASL_USERS["txstats-projector"]
    )
    consumer = kafka_consumer(projector, ProjectorSettings(), group=False)
    where = TopicPartition(topic, position.partition)
    await consumer.start()
    try:
        consumer.assign([where])
        consumer.seek(where, position.offset)
        async with asyncio.timeout(30):
            batch = await consumer.getmany(where, timeout_ms=10_000)
    finally:
        await consumer.stop()
    [record] = batch[where]
    assert deserialize(record.value) == sent


async def test_a_wrong_password_gets_nothing_in(sasl_listener: str) -> None:
    wrong = as_user(sasl_listener, "sasl.never", "txstats-command", "not-the-password")
    with pytest.raises(KafkaError):
        async with asyncio.timeout(60):
            await ensure_topic(wrong)
