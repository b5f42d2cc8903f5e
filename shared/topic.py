"""The event log's topic is ensured by our code at startup (local stack and compose alike)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from shared.kafka_client import client_options
from shared.settings import KafkaSettings

logger = logging.getLogger(__name__)

METADATA_WAIT_SECONDS = 15.0
RETENTION_FOREVER = "-1"
_NOT_ALLOWED = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError)


def topic_config(replication_factor: int) -> dict[str, str]:
    """The log is kept forever; with replicas, an acks=all write needs two in sync (so a 201
    survives the loss of the leader)."""
    return {
        "retention.ms": RETENTION_FOREVER,
        "cleanup.policy": "delete",
        "min.insync.replicas": str(min(2, replication_factor)),
    }


async def ensure_topic(settings: KafkaSettings) -> None:
    """Create the topic (partitions, retention forever) when it does not exist yet."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = await admin.list_topics()
        if settings.topic in existing:
            await _warn_if_not_kept_forever(admin, settings.topic)
            return
        topic = NewTopic(
            name=settings.topic,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            topic_configs=topic_config(settings.replication_factor),
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


async def _warn_if_not_kept_forever(admin: AIOKafkaAdminClient, topic: str) -> None:
    """An existing topic made by someone else may delete old events: then the log is no
    longer the source of truth and a rebuild would lose them. Say so loudly."""
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    error_code, _, _, _, config_entries = response.resources[0]
    if error_code != 0:
        # The entries are empty then: they say nothing about the retention either way.
        error = for_code(error_code)
        if error in _NOT_ALLOWED:
            logger.warning("topic %s: cannot verify retention (no DESCRIBE_CONFIGS)", topic)
        else:
            logger.warning("topic %s: cannot verify retention (%s)", topic, error.__name__)
        return
    entries = {entry[0]: entry[1] for entry in config_entries}
    if entries.get("retention.ms") != RETENTION_FOREVER:
        logger.error(
            "topic %s deletes events after retention.ms=%s: the log is not kept forever, so a"
            " rebuild cannot see old events; set retention.ms=-1",
            topic,
            entries.get("retention.ms"),
        )


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
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        [described] = await admin.describe_topics([settings.topic])
    finally:
        await admin.close()
    return sorted(partition["partition"] for partition in described["partitions"])
