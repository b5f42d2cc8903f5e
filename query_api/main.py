"""Composition root of the query API: configuration, the PostgreSQL reader and position
listener, the stats service, the FastAPI app. `uvicorn --factory query_api.main:create_app`.

Tests inject the configuration, a `ProjectionReader` (then no pool or listener is made) and
the clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from query_api.adapters.postgres_listener import PostgresPositionListener
from query_api.adapters.postgres_reader import PostgresProjectionReader
from query_api.adapters.prometheus_metrics import PrometheusStatsMetrics
from query_api.adapters.prometheus_stream_metrics import PrometheusStreamMetrics
from query_api.config import QueryConfig
from query_api.deps import QueryServices, install_services, read_guard, services_of
from query_api.errors import QUERY_PROBLEMS, install_query_error_handlers
from query_api.ports import Clock, ProjectionReader
from query_api.position_board import PositionBoard
from query_api.stats.coalesce import StatsReadCoalescer
from query_api.stats.routes import router
from query_api.stats.service import StatsService
from query_api.stream.routes import STREAM_PROBLEMS
from query_api.stream_wiring import install_stream, start_stream
from query_api.transactions.routes import router as transaction_router
from query_api.transactions.service import TransactionService
from query_api.windows import future_allowance
from shared.auth import JwtVerifier
from shared.database import create_pool, migrate
from shared.errors import install_error_handlers
from shared.logs import configure_logging
from shared.openapi import install_openapi
from shared.web import install_common

MAX_QUERY_BODY_BYTES = 64 * 1024

DESCRIPTION = """Reads of the transaction statistics projection: `count`, `sum`, `avg`, `max`,
`min`, all-time or over a sliding window of 1..3600 seconds (by event time), in constant time.
`consistency_token` (from the command API's 201) waits until your write is visible.

Errors are `application/problem+json` (RFC 9457); field errors list `location` (`query`) and
`field` (`window`). Reads are open unless `STATS_REQUIRE_AUTH=true` (then a bearer JWT with
scope `stats:read`)."""


def create_app(
    config: QueryConfig | None = None,
    *,
    reader: ProjectionReader | None = None,
    clock: Clock = time.time,
) -> FastAPI:
    if config is None:
        config = QueryConfig.from_environment()
        configure_logging(config.log.log_level, config.log.log_format)
    verifier = JwtVerifier(config.jwt)
    registry = CollectorRegistry()
    metrics = PrometheusStatsMetrics(registry)
    stream_metrics = PrometheusStreamMetrics(registry)
    board = PositionBoard()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            store = reader
            listener = None
            if store is None:
                pool = await create_pool(config.database)
                stack.push_async_callback(pool.close)
                async with pool.acquire() as conn:
                    await migrate(conn)
                store = PostgresProjectionReader(pool)
                listener = PostgresPositionListener(
                    dsn=config.database.database_url.get_secret_value(),
                    board=board,
                    recheck_seconds=config.progress_recheck_seconds,
                )
                await listener.start()
                stack.push_async_callback(listener.stop)
            stats = StatsService(
                reader=store,
                board=board,
                clock=clock,
                metrics=metrics,
                window_allowance=future_allowance(config.clock_skew_seconds),
                default_wait_ms=config.query.default_wait_ms,
            )
            broadcaster = await start_stream(
                stack, config=config.query, board=board, service=stats, metrics=stream_metrics
            )
            transactions = TransactionService(
                reader=store,
                board=board,
                clock=clock,
                metrics=metrics,
                default_wait_ms=config.query.default_wait_ms,
            )
            services = QueryServices(
                verifier=verifier,
                board=board,
                reader=store,
                stats=stats,
                stream=broadcaster,
                transactions=transactions,
                listener=listener,
            )
            install_services(app, services)
            yield

    app = FastAPI(
        title="Transactions query API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_common (shared/docs.py)
        redoc_url=None,
    )

    async def postgres_ready() -> None:
        await services_of(app).reader.ping()

    if not config.query.stats_require_auth:  # answers are shared only when reads are public
        # Innermost of our middlewares: request ids, latency and the body limit still apply.
        app.add_middleware(StatsReadCoalescer, board=board, metrics=metrics)
    install_common(
        app,
        registry=registry,
        checks={"postgres": postgres_ready},
        max_body_bytes=MAX_QUERY_BODY_BYTES,
    )
    guard = read_guard(require_auth=config.query.stats_require_auth)
    app.include_router(router, dependencies=guard)
    install_stream(app, config=config.query, guard=guard)
    app.include_router(transaction_router)  # always behind a JWT, whatever the guard
    install_error_handlers(app, {**QUERY_PROBLEMS, **STREAM_PROBLEMS})
    install_query_error_handlers(app)
    install_openapi(app)
    return app
