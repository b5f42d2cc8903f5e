"""Composition root of the projector process: configuration, pool, store, catalog, record
source, the fold loop and the bucket roll-up, the HTTP side and signals. The only module that
builds adapters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict

import asyncpg
from prometheus_client import CollectorRegistry

from projector.adapters.kafka_source import KafkaRecordSource
from projector.adapters.postgres_catalog import PostgresVersionCatalog
from projector.adapters.postgres_store import PostgresProjectionStore
from projector.config import ProjectorConfig
from projector.errors import RebuildLockedError
from projector.http import ops_server
from projector.loop import FoldLoop
from projector.metrics import ProjectorMetrics
from projector.positions import FoldTarget
from projector.rebuild import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    InterruptedRebuild,
    Rebuild,
    RebuildOptions,
    abort,
)
from projector.rollup import Rollup
from shared.database import Roles, SchemaNotReadyError, check_schema, create_pool, migrate, ping
from shared.runtime import tune_gc
from shared.settings import DatabaseSettings, MigrationSettings
from shared.topic import ensure_topic

logger = logging.getLogger(__name__)

EXIT_SCHEMA_NOT_READY = 6


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


def stop_when_failed(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """A background task that ends with an error logs it and stops the process at once, instead
    of the error surfacing only when something else stops it."""

    def ended(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and (err := done.exception()) is not None:
            logger.error("%s failed: stopping", done.get_name(), exc_info=err)
            stop.set()

    task.add_done_callback(ended)


def failed(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


@contextlib.asynccontextmanager
async def migrated_pool(
    config: ProjectorConfig, *, min_connections: int = 1
) -> AsyncIterator[asyncpg.Pool]:
    settings = config.database
    if settings.database_pool_max < min_connections:
        settings = settings.model_copy(update={"database_pool_max": min_connections})
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn:
            try:
                await check_schema(conn)  # migrated beforehand: `python -m projector migrate`
            except SchemaNotReadyError as err:
                logger.error("%s", err)
                raise SystemExit(EXIT_SCHEMA_NOT_READY) from err
        yield pool
    finally:
        await pool.close()


async def prepare_to_fold(config: ProjectorConfig) -> asyncio.Event:
    """What a folding process (live or rebuild) does first: tune the GC for the fold, make sure
    the topic exists, and return the event that SIGINT or SIGTERM sets."""
    tune_gc()
    stop = asyncio.Event()
    stop_on_signals(stop)
    await ensure_topic(config.kafka)
    return stop


async def run_live(config: ProjectorConfig) -> int:
    stop = await prepare_to_fold(config)
    async with (
        migrated_pool(config) as pool,
        KafkaRecordSource.started(config.kafka, config.projector, group=True) as source,
    ):
        store = PostgresProjectionStore(pool)
        metrics = ProjectorMetrics(CollectorRegistry())
        loop = FoldLoop(
            source=source,
            store=store,
            topic=config.kafka.topic,
            target=FoldTarget(live=True, version=await store.active_version()),
            metrics=metrics,
            max_batch=config.projector.max_batch,
            poll_timeout_ms=config.projector.poll_timeout_ms,
        )
        source.subscribe(loop.rebalancing)
        await source.connect()

        async def postgres_ready() -> None:
            await ping(pool)

        server = ops_server(
            metrics=metrics,
            checks={"kafka": source.ping, "postgres": postgres_ready},
            host=config.projector.http_host,
            port=config.projector.http_port,
        )
        serving = asyncio.create_task(server.serve())
        serving.add_done_callback(lambda _: stop.set())
        rollup = Rollup(store=store, caught_up_within=config.projector.max_batch)
        rolling = asyncio.create_task(rollup.run(stop), name="the bucket roll-up")
        stop_when_failed(rolling, stop)
        logger.info(
            "projector started",
            extra={"topic": config.kafka.topic, "group": config.projector.group_id},
        )
        try:
            await loop.run(stop)
        finally:
            rolling.cancel()
            await asyncio.wait([rolling])  # an error of its own is logged by `stop_when_failed`
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
            logger.info("projector stopped", extra={"folded": loop.folded_total})
        return EXIT_FAILED if failed(rolling) else 0


async def run_rebuild(config: ProjectorConfig, options: RebuildOptions) -> int:
    stop = await prepare_to_fold(config)
    # the rebuild lock, the active-version hold and the fold each need a connection
    async with (
        migrated_pool(config, min_connections=4) as pool,
        KafkaRecordSource.started(config.kafka, config.projector, group=False) as source,
    ):
        rebuild = Rebuild(
            catalog=PostgresVersionCatalog(pool),
            store=PostgresProjectionStore(pool),
            source=source,
            topic=config.kafka.topic,
            metrics=ProjectorMetrics(CollectorRegistry()),
            max_batch=config.projector.max_batch,
            poll_timeout_ms=config.projector.poll_timeout_ms,
            stop=stop,
        )
        try:
            await source.connect()
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


async def run_abort(config: ProjectorConfig) -> int:
    async with migrated_pool(config) as pool:
        try:
            removed = await abort(PostgresVersionCatalog(pool))
        except RebuildLockedError as err:
            logger.error("%s; stop it first", err)
            return EXIT_LOCKED
    sys.stdout.write(json.dumps({"removed_versions": removed}) + "\n")
    return 0


async def run_status(config: ProjectorConfig) -> int:
    async with migrated_pool(config) as pool:
        catalog = PostgresVersionCatalog(pool)
        active = await catalog.active()
        versions = []
        for info in await catalog.describe():
            entry = asdict(info)
            entry["lag"] = sum(max(0, info.log_end.get(p, 0) - o) for p, o in info.offsets.items())
            versions.append(entry)
    sys.stdout.write(json.dumps({"active_version": active, "versions": versions}, indent=2))
    sys.stdout.write("\n")
    return 0


async def run_migrate(database: DatabaseSettings, migration: MigrationSettings) -> int:
    """The one-shot schema step, as the schema's owner (`MIGRATION_DATABASE_URL`, else
    `DATABASE_URL`): apply what is missing, grant the projector's and the query API's roles."""
    url = (migration.database_url or database.database_url).get_secret_value()
    conn = await asyncpg.connect(url, timeout=30)
    try:
        applied = await migrate(conn, Roles(migration.projector_role, migration.query_role))
    except asyncpg.UndefinedObjectError as err:  # a role to grant does not exist
        logger.error(
            "%s: create the roles first (scripts/stack.sh does, and compose's PostgreSQL;"
            " docs/operations.md, PostgreSQL roles)",
            err,
        )
        return 1
    finally:
        await conn.close()
    sys.stdout.write(json.dumps({"applied": applied}) + "\n")
    return 0
