"""Composition root of the projector process: pool, store, consumer, HTTP side, signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict

import asyncpg
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from projector.adapters.postgres_store import PostgresProjectionStore
from projector.consumer import FoldTarget, Projector
from projector.http import ops_server
from projector.metrics import ProjectorMetrics
from projector.rebuild import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    InterruptedRebuild,
    Rebuild,
    RebuildOptions,
    abort,
)
from projector.versions import RebuildLockedError, VersionCatalog
from shared.database import create_pool, migrate, ping
from shared.settings import DatabaseSettings, KafkaSettings, ProjectorSettings
from shared.topic import ensure_topic

logger = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 50_000


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


def tune_gc() -> None:
    """The fold allocates millions of short-lived, acyclic objects (records, events, Decimals,
    datetimes), mostly freed by reference counting. With CPython's default thresholds the cyclic
    collector ran every 700 allocations and rescanned the batch in flight each time, a third of
    the projector's CPU. Collect the young generation less often, and freeze what start-up
    built so that full collections skip it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


async def run_live() -> None:
    kafka, settings = KafkaSettings(), ProjectorSettings()
    tune_gc()
    stop = asyncio.Event()
    stop_on_signals(stop)
    await ensure_topic(kafka)
    async with migrated_pool() as pool:
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


@contextlib.asynccontextmanager
async def migrated_pool(*, min_connections: int = 1) -> AsyncIterator[asyncpg.Pool]:
    settings = DatabaseSettings()
    if settings.database_pool_max < min_connections:
        settings = settings.model_copy(update={"database_pool_max": min_connections})
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        yield pool
    finally:
        await pool.close()


async def run_rebuild(options: RebuildOptions) -> int:
    kafka, settings = KafkaSettings(), ProjectorSettings()
    tune_gc()
    stop = asyncio.Event()
    stop_on_signals(stop)
    await ensure_topic(kafka)
    # the rebuild lock, the active-version hold and the fold each need a connection
    async with migrated_pool(min_connections=4) as pool:
        rebuild = Rebuild(
            pool=pool,
            kafka=kafka,
            settings=settings,
            metrics=ProjectorMetrics(CollectorRegistry()),
            stop=stop,
        )
        try:
            return await rebuild.run(options)
        except RebuildLockedError as err:
            logger.error("%s; try again when it has finished", err)
            return EXIT_LOCKED
        except InterruptedRebuild:
            logger.warning(
                "rebuild interrupted: the live projection is untouched; run `rebuild` again to"
                " resume or `rebuild --abort` to remove the partial version"
            )
            return EXIT_INTERRUPTED
        except Exception:
            logger.exception(
                "rebuild failed: the live projection is untouched unless the report above says"
                " swapped; run `rebuild` again to resume"
            )
            return EXIT_FAILED


async def run_abort() -> int:
    async with migrated_pool() as pool:
        try:
            removed = await abort(pool)
        except RebuildLockedError as err:
            logger.error("%s; stop it first", err)
            return EXIT_LOCKED
    sys.stdout.write(json.dumps({"removed_versions": removed}) + "\n")
    return 0


async def run_status() -> int:
    async with migrated_pool() as pool:
        catalog = VersionCatalog(pool)
        active = await catalog.active()
        versions = []
        for info in await catalog.describe():
            entry = asdict(info)
            entry["lag"] = sum(max(0, info.log_end.get(p, 0) - o) for p, o in info.offsets.items())
            versions.append(entry)
    sys.stdout.write(json.dumps({"active_version": active, "versions": versions}, indent=2))
    sys.stdout.write("\n")
    return 0
