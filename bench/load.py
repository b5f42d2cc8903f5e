"""Loading the event log for the read and fold benchmarks: events serialized with the one
serializer (`shared.events.serialize`), keyed by transaction id and partitioned as the
command API's producer partitions them (`shared.partitioner`), appended straight to the topic
in whole record batches (pipelined, acks=all). `append_records` is also the producer ceiling
(bench/ceilings.py)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.events import TransactionRecorded, event_headers, serialize
from shared.partitioner import partition_of
from shared.settings import KafkaSettings

BATCH_BYTES = 512 * 1024
PRODUCER = "bench-loader"


def synthetic_events(
    count: int, *, span: timedelta = timedelta(minutes=50), seed: int = 7
) -> Iterator[TransactionRecorded]:
    """`count` distinct transactions whose event times advance with their position in the log
    (as live traffic does), over `span` ending now, with a little jitter; amounts 0.01 to
    10,000.00 in whole cents."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    start = now - span
    step = span / max(count, 1)
    for index in range(count):
        jitter = timedelta(milliseconds=rng.randint(-2000, 0))
        occurred = min(now, start + step * index + jitter)
        cents = rng.randint(1, 1_000_000)
        yield TransactionRecorded(
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            transaction_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            amount=Decimal(cents).scaleb(-2),
            occurred_at=occurred,
            recorded_at=now,
            producer=PRODUCER,
        )


async def append_events(
    settings: KafkaSettings, events: Iterable[TransactionRecorded]
) -> tuple[int, float]:
    """Append every event; return how many and the seconds it took."""
    return await append_records(settings, ((event.key, serialize(event)) for event in events))


async def append_records(
    settings: KafkaSettings, records: Iterable[tuple[bytes, bytes]]
) -> tuple[int, float]:
    """Append (key, value) records as whole record batches per partition, acks=all and
    idempotent; return how many and the seconds it took (from connecting to the last ack)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        max_batch_size=BATCH_BYTES,
        max_request_size=2 * BATCH_BYTES,
        linger_ms=5,
    )
    started = time.perf_counter()
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(settings.topic))
        headers = event_headers()
        builders: dict[int, Any] = {}
        pending: list[asyncio.Future[Any]] = []
        count = 0
        for key, value in records:
            partition = partition_of(key, partitions)
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                pending.append(
                    await producer.send_batch(builder, settings.topic, partition=partition)
                )
                builder = builders[partition] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None, headers=headers)
            count += 1
        for partition, builder in builders.items():
            if builder.record_count():
                pending.append(
                    await producer.send_batch(builder, settings.topic, partition=partition)
                )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count, time.perf_counter() - started
