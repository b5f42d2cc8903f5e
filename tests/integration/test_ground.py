"""The ground is real: a message round-trips through the broker, SQL runs on PostgreSQL."""

from __future__ import annotations

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.database import migrate
from tests.integration.conftest import TopicFactory


async def test_message_round_trips_through_the_broker(kafka_settings: TopicFactory) -> None:
    settings = await kafka_settings()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(settings.topic, b"hello", key=b"k1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.offset) == (b"k1", b"hello", meta.offset)


async def test_topic_is_ensured_with_partitions_and_infinite_retention(
    kafka_settings: TopicFactory,
) -> None:
    settings = await kafka_settings(partitions=6)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([settings.topic])
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic)]
        )
    finally:
        await admin.close()
    assert len(described["partitions"]) == 6
    entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
    assert entries["retention.ms"] == "-1"


async def test_migrations_are_idempotent_and_seed_the_active_version(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn) == []  # the fixture applied them already
        assert await conn.fetchval("SELECT version FROM projection_active") == 1
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
    finally:
        await conn.close()
