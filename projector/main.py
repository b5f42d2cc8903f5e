"""Composition root of the projector process: pool, store, consumer, HTTP side, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from projector.adapters.postgres_store import PostgresProjectionStore
from projector.consumer import FoldTarget, Projector
from projector.http import ops_server
from projector.metrics import ProjectorMetrics
from shared.database import create_pool, migrate, ping
from shared.settings import DatabaseSettings, KafkaSettings, ProjectorSettings
from shared.topic import ensure_topic

logger = logging.getLogger(__name__)


def kafka_consumer(
    kafka: KafkaSettings, settings: ProjectorSettings, *, group: bool
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=settings.group_id if group else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        max_poll_records=settings.max_batch,
    )


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


async def run_live() -> None:
    kafka, database, settings = KafkaSettings(), DatabaseSettings(), ProjectorSettings()
    stop = asyncio.Event()
    stop_on_signals(stop)
    await ensure_topic(kafka)
    pool = await create_pool(database)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        store = PostgresProjectionStore(pool)
        metrics = ProjectorMetrics(CollectorRegistry())
        consumer = kafka_consumer(kafka, settings, group=True)
        projector = Projector(
            consumer=consumer,
            store=store,
            topic=kafka.topic,
            target=FoldTarget(live=True, version=await store.active_version()),
            metrics=metrics,
            max_batch=settings.max_batch,
            poll_timeout_ms=settings.poll_timeout_ms,
        )
        consumer.subscribe([kafka.topic], listener=projector.listener)
        await consumer.start()

        async def kafka_ready() -> None:
            await consumer.topics()

        async def postgres_ready() -> None:
            await ping(pool)

        server = ops_server(
            metrics=metrics,
            checks={"kafka": kafka_ready, "postgres": postgres_ready},
            host=settings.http_host,
            port=settings.http_port,
        )
        serving = asyncio.create_task(server.serve())
        serving.add_done_callback(lambda _: stop.set())
        logger.info("projector started", extra={"topic": kafka.topic, "group": settings.group_id})
        try:
            await projector.run(stop)
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
            await consumer.stop()
            logger.info("projector stopped", extra={"folded": projector.folded_total})
    finally:
        await pool.close()
