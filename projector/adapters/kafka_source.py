"""`KafkaRecordSource`: the event log through aiokafka, behind the `RecordSource` port.

Kafka's committed offsets never position the consumer (the store's offsets do, see
projector/loop.py); they are committed only so that standard tools show the group's lag.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from projector.errors import SourceUnavailable
from projector.ports import Fetched, RebalanceHandler
from shared.kafka_client import client_options
from shared.settings import KafkaSettings, ProjectorSettings
from shared.topic import topic_partitions

logger = logging.getLogger(__name__)

FAILURES = (KafkaError, OSError, TimeoutError)


def kafka_consumer(
    kafka: KafkaSettings, projector: ProjectorSettings, *, group: bool
) -> AIOKafkaConsumer:
    """The one consumer configuration of the live projector (`group`) and the rebuild."""
    return AIOKafkaConsumer(
        **client_options(kafka),
        group_id=projector.group_id if group else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        max_poll_records=projector.max_batch,
    )


class KafkaRecordSource:
    def __init__(self, consumer: AIOKafkaConsumer, kafka: KafkaSettings) -> None:
        self._consumer = consumer
        self._kafka = kafka
        self._topic = kafka.topic
        self._grouped = False

    @classmethod
    @asynccontextmanager
    async def started(
        cls, kafka: KafkaSettings, projector: ProjectorSettings, *, group: bool
    ) -> AsyncIterator[KafkaRecordSource]:
        """A source on a new consumer; `subscribe` (group) or `assign` it, then `connect`."""
        source = cls(kafka_consumer(kafka, projector, group=group), kafka)
        try:
            yield source
        finally:
            await source._consumer.stop()

    async def connect(self) -> None:
        try:
            await self._consumer.start()
        except FAILURES as err:
            raise SourceUnavailable(repr(err)) from err

    async def ping(self) -> None:
        try:
            await self._consumer.topics()
        except FAILURES as err:
            raise SourceUnavailable(repr(err)) from err

    def subscribe(self, handler: RebalanceHandler) -> None:
        self._grouped = True
        self._consumer.subscribe([self._topic], listener=_Rebalance(handler))

    def assign(self, partitions: Sequence[int]) -> None:
        self._consumer.assign([TopicPartition(self._topic, p) for p in partitions])

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self._topic, partition), offset)

    async def fetch(self, *, timeout_ms: int, max_records: int) -> Fetched:
        try:
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except FAILURES as err:
            raise SourceUnavailable(repr(err)) from err
        return Fetched(
            records={tp.partition: records for tp, records in fetched.items()},
            log_end={tp.partition: self._consumer.highwater(tp) or 0 for tp in fetched},
        )

    async def partitions(self) -> list[int]:
        try:
            return await topic_partitions(self._kafka)
        except FAILURES as err:
            raise SourceUnavailable(repr(err)) from err

    async def end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        try:
            ends = await self._consumer.end_offsets(self._partitions(partitions))
        except FAILURES as err:
            raise SourceUnavailable(repr(err)) from err
        return {tp.partition: offset for tp, offset in ends.items()}

    async def offsets_at(self, moment: datetime, partitions: Sequence[int]) -> dict[int, int]:
        stamp = int(moment.timestamp() * 1000)
        try:
            found = await self._consumer.offsets_for_times(
                dict.fromkeys(self._partitions(partitions), stamp)
            )
            ends = await self.end_offsets(partitions)
        except FAILURES as err:
            raise SourceUnavailable(repr(err)) from err
        return {
            tp.partition: ends[tp.partition] if hit is None else hit.offset
            for tp, hit in found.items()
        }

    async def commit_offsets(self, offsets: Mapping[int, int]) -> None:
        if not self._grouped or not offsets:
            return
        try:
            await self._consumer.commit(
                {TopicPartition(self._topic, p): o for p, o in offsets.items()}
            )
        except FAILURES as err:  # a rebalance or an outage: the next batch commits again
            logger.debug("offsets not committed to Kafka (monitoring only): %r", err)

    def _partitions(self, partitions: Sequence[int]) -> list[TopicPartition]:
        return [TopicPartition(self._topic, p) for p in partitions]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, handler: RebalanceHandler) -> None:
        self._handler = handler

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._handler.partitions_revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._handler.partitions_assigned([tp.partition for tp in assigned])
