"""`KafkaEventPublisher`: appends events with one idempotent `AIOKafkaProducer` (acks=all).

- Each event goes to the partition Kafka's default partitioner gives its key
  (`shared.partitioner`), into the record batch that concurrent publishes are filling for that
  partition (`partition_batches.py`: whole batches handed to the producer, one future per
  batch fanned out). A publish returns once every one of its events is acknowledged, each at
  its batch's base offset plus its place in the batch: a position, as before, only after the
  log acknowledged that very event with acks=all.
- Each publish is bounded by `PUBLISH_TIMEOUT_SECONDS` (every record batch carries that
  deadline from its first event). No ack in time, an unknown topic, a broker error or no
  connection -> `PublishFailedError`. A timed-out event may still be appended later (the
  idempotent producer keeps retrying what it has already accepted, and an ack can be lost
  after the write): a 503 means "not confirmed", and a retry with the same transaction ids is
  counted once by the projector.
- The API starts even while the log is unreachable: the producer connects in the background
  with capped backoff, publishes answer 503 meanwhile and `/ready` says "kafka". Once
  connected, aiokafka reconnects to brokers by itself; no restart is needed.
- aiokafka does not recover an idempotent producer whose sequence state the broker refuses
  (`OutOfOrderSequenceNumber` after a broker outage): such a producer is replaced by a new
  one (a new producer id) in the background, so the API recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)

from command_api.adapters.partition_batches import PartitionBatches, Ticket
from command_api.ports import EventLogNotReadyError, Position, PublishFailedError
from shared.events import TransactionRecorded, serialize
from shared.kafka_client import client_options
from shared.partitioner import partition_of
from shared.settings import CommandSettings, KafkaSettings
from shared.topic import ensure_topic

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
# Concurrent publishes fill a partition's record batch together; a full one is queued and the
# next one started, so the size only bounds one produce request per partition.
MAX_BATCH_BYTES = 256 * 1024
FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0
_CONNECT_ERRORS = (KafkaError, OSError, TimeoutError)
# The idempotent producer's id/sequence state no longer matches the broker's: aiokafka never
# recovers from these (after a broker outage it may expire batches and leave a sequence gap),
# so every later publish would fail. The publisher replaces the producer instead.
_BROKEN_PRODUCER_ERRORS = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    ProducerFenced,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
)

_RETRY_HINT = "retry later with the same transaction ids (they are counted once)."


class KafkaEventPublisher:
    def __init__(
        self,
        kafka: KafkaSettings,
        command: CommandSettings,
        *,
        create_topic: bool = True,
        client_id: str = "txstats-command-api",
        producer_factory: Callable[..., Any] = AIOKafkaProducer,
    ) -> None:
        self._kafka = kafka
        self._timeout = command.publish_timeout_seconds
        self._linger_ms = command.producer_linger_ms
        self._create_topic = create_topic
        self._client_id = client_id
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._batches: PartitionBatches | None = None
        self._connector: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect now if the log answers, else keep trying in the background."""
        try:
            await self._connect()
        except _CONNECT_ERRORS as err:
            logger.warning(
                "event log unreachable at start; retrying in the background",
                extra={"bootstrap": self._kafka.bootstrap_servers, "error": repr(err)},
            )
            self._connector = asyncio.create_task(self._keep_connecting(), name="kafka-connect")

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
            self._connector = None
        producer, self._producer = self._producer, None
        if self._batches is not None:
            self._batches.close(ProducerClosed())
            self._batches = None
        if producer is not None:
            await _close(producer)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        if len(events) == 1:  # a single POST: no lists to build
            event = events[0]
            producer, batches, count = await self._ready()
            key = event.key
            ticket, place = batches.append(partition_of(key, count), key, serialize(event))
            await self._settle(ticket, producer, 1)
            return [Position(ticket.partition, ticket.outcome.result() + place)]
        return await self.publish_serialized(
            [event.key for event in events], [serialize(event) for event in events]
        )

    async def publish_serialized(
        self, keys: Sequence[bytes], values: Sequence[bytes]
    ) -> list[Position]:
        producer, batches, count = await self._ready()
        append = batches.append
        placed = [
            append(partition_of(key, count), key, value)
            for key, value in zip(keys, values, strict=True)
        ]
        for ticket in {ticket for ticket, _ in placed}:
            await self._settle(ticket, producer, len(placed))
        return [
            Position(ticket.partition, ticket.outcome.result() + place) for ticket, place in placed
        ]

    async def _ready(self) -> tuple[Any, PartitionBatches, int]:
        """The producer, its batches and the topic's partition count, or the 503 of an
        unreachable log."""
        producer, batches = self._producer, self._batches
        if producer is None or batches is None:
            detail = "The event log is unreachable; " + _RETRY_HINT
            raise PublishFailedError("not_connected", detail)
        partitions = producer.client.cluster.partitions_for_topic(self._kafka.topic)
        if partitions is None:  # metadata not known yet: wait for it, within the bound
            partitions = await self._await_partitions(producer)
        return producer, batches, len(partitions)

    async def _await_partitions(self, producer: Any) -> set[int]:
        topic = self._kafka.topic
        try:
            async with asyncio.timeout(self._timeout):
                partitions: set[int] = await producer.partitions_for(topic)
        except TimeoutError as err:
            raise _timed_out(topic, 0, self._timeout) from err
        except KafkaError as err:
            raise _rejected(topic, err) from err
        return partitions

    async def _settle(self, ticket: Ticket, producer: Any, events: int) -> None:
        """Wait for a batch's outcome (bounded by its deadline); its failure as ours."""
        try:
            # shielded: a publish cancelled while waiting must not cancel the outcome that
            # the other publishes in the same batch wait for
            await asyncio.shield(ticket.outcome)
        except TimeoutError as err:
            raise _timed_out(self._kafka.topic, events, self._timeout) from err
        except Exception as err:
            self._replace_if_broken(producer, err)
            raise _rejected(self._kafka.topic, err) from err

    async def check_ready(self) -> None:
        producer = self._producer
        if producer is None:
            msg = "not connected to the event log"
            raise EventLogNotReadyError(msg)
        if not await producer.client.force_metadata_update():
            msg = "no broker answered a metadata request"
            raise EventLogNotReadyError(msg)
        if not producer.client.cluster.partitions_for_topic(self._kafka.topic):
            msg = f"topic {self._kafka.topic} is unknown"
            raise EventLogNotReadyError(msg)

    async def _connect(self) -> None:
        producer = self._producer_factory(
            **client_options(self._kafka),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            max_batch_size=MAX_BATCH_BYTES,
            request_timeout_ms=self._kafka.request_timeout_ms
            or max(1000, int(self._timeout * 1000)),
            metadata_max_age_ms=self._kafka.metadata_max_age_ms,
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await producer.start()
                if self._create_topic:
                    await ensure_topic(self._kafka)
                await producer.client.add_topic(self._kafka.topic)
        except BaseException:
            await _close(producer)
            raise
        self._batches = PartitionBatches(
            producer, self._kafka.topic, timeout=self._timeout, linger=self._linger_ms / 1000
        )
        self._producer = producer
        logger.info(
            "connected to the event log",
            extra={"bootstrap": self._kafka.bootstrap_servers, "topic": self._kafka.topic},
        )

    def _replace_if_broken(self, producer: Any, err: BaseException) -> None:
        """Drop a producer whose idempotence state is broken and connect a new one (a new
        producer id) in the background; meanwhile publishes answer 503 at once."""
        if not isinstance(err, _BROKEN_PRODUCER_ERRORS) or self._producer is not producer:
            return  # another error, or another request already replaced it
        self._producer = None
        if self._batches is not None:
            self._batches.close(err)
            self._batches = None
        logger.warning(
            "the Kafka producer's sequence state is broken; replacing the producer",
            extra={"error": repr(err)},
        )
        closing = asyncio.create_task(_discard(producer), name="kafka-close-broken")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        if self._connector is None or self._connector.done():
            self._connector = asyncio.create_task(self._keep_connecting(), name="kafka-connect")

    async def _keep_connecting(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except _CONNECT_ERRORS as err:
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                logger.warning(
                    "event log still unreachable",
                    extra={"error": repr(err), "retry_in_s": delay},
                )
            else:
                return


def _timed_out(topic: str, events: int, timeout: float) -> PublishFailedError:
    logger.warning(
        "event log did not acknowledge in time",
        extra={"topic": topic, "events": events, "timeout_s": timeout},
    )
    detail = f"The event log did not confirm within {timeout:g} s; " + _RETRY_HINT
    return PublishFailedError("timeout", detail)


def _rejected(topic: str, err: BaseException) -> PublishFailedError:
    logger.warning("event log refused a publish", extra={"topic": topic, "error": repr(err)})
    return PublishFailedError("rejected", "The event log refused the write; " + _RETRY_HINT)


async def _discard(producer: Any) -> None:
    try:
        await _close(producer)
    except _CONNECT_ERRORS as err:
        logger.warning("closing a broken Kafka producer failed", extra={"error": repr(err)})


async def _close(producer: Any) -> None:
    try:
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
            await producer.stop()
    except TimeoutError:
        logger.warning("the Kafka producer did not flush and close in time")
