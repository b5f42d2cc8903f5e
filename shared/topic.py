"""The event log's topic is ensured by our code at startup (local stack and compose alike)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from shared.settings import KafkaSettings

logger = logging.getLogger(__name__)

METADATA_WAIT_SECONDS = 15.0
TOPIC_CONFIG = {"retention.ms": "-1", "cleanup.policy": "delete", "min.insync.replicas": "1"}


async def ensure_topic(settings: KafkaSettings) -> None:
    """Create the topic (partitions, retention forever) when it does not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = await admin.list_topics()
        if settings.topic in existing:
            return
        topic = NewTopic(
            name=settings.topic,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            topic_configs=TOPIC_CONFIG,
        )
        response = await admin.create_topics([topic])
        for topic_error in response.topic_errors:
            error = for_code(topic_error[1])
            if error is TopicAlreadyExistsError:
                logger.info("topic %s was created concurrently", settings.topic)
            elif topic_error[1] != 0:
                raise error(f"cannot create topic {settings.topic}")
        await asyncio.wait_for(_until_led(admin, settings.topic), METADATA_WAIT_SECONDS)
        logger.info("ensured topic %s (%d partitions)", settings.topic, settings.partitions)
    finally:
        await admin.close()


async def _until_led(admin: AIOKafkaAdminClient, topic: str) -> None:
    """A created topic reaches the brokers' metadata a moment later: wait until every
    partition has a leader, so that producers and readiness checks can use it at once."""
    while True:
        [described] = await admin.describe_topics([topic])
        partitions = described["partitions"]
        if partitions and all(partition["leader"] >= 0 for partition in partitions):
            return
        await asyncio.sleep(0.05)


async def topic_partitions(settings: KafkaSettings) -> list[int]:
    """The topic's partition ids, from the brokers' metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([settings.topic])
    finally:
        await admin.close()
    return sorted(partition["partition"] for partition in described["partitions"])
