"""`KafkaEventPublisher`: appends events with one idempotent `AIOKafkaProducer` (acks=all).

- Each publish is bounded by `PUBLISH_TIMEOUT_SECONDS`: the events are partitioned by key as
  Kafka's default partitioner does (`shared.partitioner`), each partition's share is handed to
  the producer as whole record batches (`create_batch`/`send_batch`: built in aiokafka's C
  extension, one future per batch) when the share is large, else by `send()` (lingering into
  the record batch other requests are filling); then all acks are awaited. aiokafka
  keeps one undelivered batch per partition, so concurrent publishes take turns per partition
  (a lock each): only one at a time waits inside aiokafka, whose wait shrinks its own budget
  at every wake-up and failed concurrent publishes with a timeout.
  No ack in time, an unknown topic, a broker error or no connection -> `PublishFailedError`.
  A timed-out event may still be appended later (the idempotent producer keeps retrying what it
  has already accepted, and an ack can be lost after the write): a 503 means "not confirmed",
  and a retry with the same transaction ids is counted once by the projector.
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
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from command_api.ports import EventLogNotReadyError, Position, PublishFailedError
from shared.events import TransactionRecorded, event_headers, serialize
from shared.kafka_client import client_options
from shared.partitioner import partition_of
from shared.settings import CommandSettings, KafkaSettings
from shared.topic import ensure_topic

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
# One publish's share of a partition fits one record batch (1,000 events of ~300 bytes over
# 6 partitions: ~50 KiB), and so do all the single events that linger together.
MAX_BATCH_BYTES = 256 * 1024
# A partition takes one record batch per round trip to the broker. A share of a publish this
# large is worth its own batch (built in C, one future); a smaller one goes by `send()`, into
# the batch that concurrent publishes fill together: small batches of their own would queue
# one per round trip, and many small concurrent publishes would wait behind each other until
# they time out.
MIN_OWN_BATCH_EVENTS = 100
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

_HEADERS = event_headers()
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
        self._connector: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._turns: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

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
        if producer is not None:
            await _close(producer)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        producer = self._producer
        if producer is None:
            detail = "The event log is unreachable; " + _RETRY_HINT
            raise PublishFailedError("not_connected", detail)
        topic = self._kafka.topic
        shipment = _Shipment(producer, topic, self._turns)
        try:
            async with asyncio.timeout(self._timeout):
                partitions = len(await producer.partitions_for(topic))
                for partition, share in _by_partition(events, partitions).items():
                    await shipment.send(partition, share)
                results = await asyncio.gather(
                    *(batch.ack for batch in shipment.sent), return_exceptions=True
                )
        except TimeoutError as err:
            shipment.forget()
            logger.warning(
                "event log did not acknowledge in time",
                extra={"topic": topic, "events": len(events), "timeout_s": self._timeout},
            )
            detail = f"The event log did not confirm within {self._timeout:g} s; " + _RETRY_HINT
            raise PublishFailedError("timeout", detail) from err
        except KafkaError as err:
            shipment.forget()
            self._replace_if_broken(producer, err)
            raise _rejected(topic, err) from err
        positions: list[Position | None] = [None] * len(events)
        for batch, result in zip(shipment.sent, results, strict=True):
            if isinstance(result, BaseException):
                self._replace_if_broken(producer, result)
                raise _rejected(topic, result) from result
            # The ack names the batch's first offset; its records' offsets are contiguous.
            for relative, index in enumerate(batch.indexes):
                positions[index] = Position(result.partition, result.offset + relative)
        return cast(list[Position], positions)

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
            linger_ms=self._linger_ms,
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


@dataclass(frozen=True, slots=True)
class _Sent:
    """One acknowledgement to wait for, and the events (indexes in the publish) it covers in
    their order in the record batch."""

    ack: asyncio.Future[Any]
    indexes: list[int]


def _by_partition(
    events: Sequence[TransactionRecorded], partitions: int
) -> dict[int, list[tuple[int, TransactionRecorded]]]:
    shares: dict[int, list[tuple[int, TransactionRecorded]]] = {}
    for index, event in enumerate(events):
        shares.setdefault(partition_of(event.key, partitions), []).append((index, event))
    return shares


class _Shipment:
    """One publish's events handed to the producer, and the acks to wait for."""

    def __init__(self, producer: Any, topic: str, turns: defaultdict[int, asyncio.Lock]) -> None:
        self._producer = producer
        self._topic = topic
        self._turns = turns
        self.sent: list[_Sent] = []

    async def send(self, partition: int, share: list[tuple[int, TransactionRecorded]]) -> None:
        """One partition's share: whole record batches when it is large, else `send()`s."""
        if len(share) < MIN_OWN_BATCH_EVENTS:
            for index, event in share:
                await self._send_alone(partition, index, event.key, serialize(event))
            return
        producer = self._producer
        batch, indexes = producer.create_batch(), list[int]()
        for index, event in share:
            key, value = event.key, serialize(event)
            if batch.append(key=key, value=value, timestamp=None, headers=_HEADERS) is None:
                if indexes:  # full: send it and start the next one with this event
                    await self._send_batch(partition, batch, indexes)
                batch, indexes = producer.create_batch(), []
                if batch.append(key=key, value=value, timestamp=None, headers=_HEADERS) is None:
                    await self._send_alone(partition, index, key, value)
                    batch = producer.create_batch()  # the refused append closed that one
                    continue
            indexes.append(index)
        if indexes:
            await self._send_batch(partition, batch, indexes)

    async def _send_batch(self, partition: int, batch: Any, indexes: list[int]) -> None:
        async with self._turns[partition]:
            ack = await self._producer.send_batch(batch, self._topic, partition=partition)
        self.sent.append(_Sent(ack, indexes))

    async def _send_alone(self, partition: int, index: int, key: bytes, value: bytes) -> None:
        """`send()` lingers into the record batch other publishes are filling, and gives an
        event larger than an empty batch a batch sized to fit it."""
        ack = await self._producer.send(
            self._topic, value, key=key, partition=partition, headers=_HEADERS
        )
        self.sent.append(_Sent(ack, [index]))

    def forget(self) -> None:
        """Stop waiting for acks we no longer report (the producer may still deliver them)."""
        for batch in self.sent:
            batch.ack.cancel()


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
