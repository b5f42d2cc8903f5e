"""Composition root of the query API: `create_app` builds every object of the process in one
place (configuration, verifier, metrics, position board, the PostgreSQL pools, readers and
listener, the services, the stream's broadcaster, the FastAPI app); its lifespan only starts
and stops them. `uvicorn --factory query_api.main:create_app`.

The streams read through a pool of their own (`STREAM_POOL_SIZE`), so however many streams
and windows clients hold, `GET /stats` and `/ready` keep their connections. A client's address
is the peer's, or what a trusted proxy (`TRUSTED_PROXIES`) says in `X-Forwarded-For`
(uvicorn's own middleware); run uvicorn with `--no-proxy-headers` so that only this setting
decides whom to believe.

Tests inject the configuration, a `ProjectionReader` (then no pool or listener is made) and
the clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from query_api.adapters.postgres_listener import PostgresPositionListener
from query_api.adapters.postgres_reader import PostgresProjectionReader
from query_api.adapters.prometheus_metrics import PrometheusStatsMetrics
from query_api.adapters.prometheus_stream_metrics import PrometheusStreamMetrics
from query_api.config import QueryConfig
from query_api.consistency import ConsistentReads
from query_api.deps import QueryServices, install_services, read_guard
from query_api.errors import QUERY_PROBLEMS, install_query_error_handlers
from query_api.ports import Clock, ProjectionReader
from query_api.position_board import PositionBoard
from query_api.stats.coalesce import StatsReadCoalescer
from query_api.stats.models import StatsResponse
from query_api.stats.routes import router as stats_router
from query_api.stats.service import StatsService
from query_api.stream.broadcaster import Read, StatsBroadcaster, StreamEvent, Window
from query_api.stream.dashboard import dashboard_router
from query_api.stream.routes import STREAM_PROBLEMS, stream_router
from query_api.transactions.routes import router as transactions_router
from query_api.transactions.service import TransactionStatusService
from query_api.windows import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS, future_allowance
from shared.auth import JwtVerifier
from shared.database import check_schema, new_pool
from shared.errors import install_error_handlers
from shared.logs import configure_logging
from shared.openapi import install_openapi
from shared.web import install_common

MAX_QUERY_BODY_BYTES = 64 * 1024

DESCRIPTION = f"""Reads of the transaction statistics projection: `count`, `sum`, `avg`, `max`,
`min`, all-time or over a sliding window of {MIN_WINDOW_SECONDS}..{MAX_WINDOW_SECONDS} seconds \
(by event time), in constant time.
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
    """The query API. Call it in the event loop that serves the app (`uvicorn --factory`
    does): the PostgreSQL pool is bound to that loop."""
    if config is None:
        config = QueryConfig.from_environment()
        configure_logging(config.log.log_level, config.log.log_format)
    settings = config.query
    verifier = JwtVerifier(config.jwt)
    registry = CollectorRegistry()
    metrics = PrometheusStatsMetrics(registry)
    board = PositionBoard()
    postgres: _Postgres | None = None
    listener: PostgresPositionListener | None = None
    stream_reader: ProjectionReader
    if reader is None:
        postgres = _Postgres(config, board)
        reader, stream_reader, listener = postgres.reader, postgres.stream_reader, postgres.listener
    else:
        stream_reader = reader
    consistent = ConsistentReads(
        board=board, metrics=metrics, default_wait_ms=settings.default_wait_ms
    )

    def stats_from(source: ProjectionReader) -> StatsService:
        return StatsService(
            reader=source,
            consistent=consistent,
            clock=clock,
            metrics=metrics,
            window_allowance=future_allowance(config.clock_skew_seconds),
        )

    stats = stats_from(reader)
    transaction_status = TransactionStatusService(reader=reader, consistent=consistent, clock=clock)
    broadcaster = StatsBroadcaster(
        read=_stats_events(stats_from(stream_reader)),
        changes=board,
        metrics=PrometheusStreamMetrics(registry),
        max_hz=settings.stream_max_hz,
        max_clients=settings.stream_max_clients,
        max_per_client=settings.stream_max_per_client,
        windows=settings.stream_windows,
        queue_size=settings.stream_queue_size,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if postgres is not None:
                await postgres.open(stack)
            if listener is not None:
                await listener.start()
                stack.push_async_callback(listener.stop)
            stack.push_async_callback(broadcaster.close)  # first on shutdown: ends every stream
            yield

    app = FastAPI(
        title="Transactions query API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_common (shared/docs.py)
        redoc_url=None,
    )
    install_services(
        app,
        QueryServices(verifier=verifier, board=board, listener=listener),
        stats,
        transaction_status,
        broadcaster,
    )
    if not settings.stats_require_auth:  # answers are shared only when reads are public
        # Innermost of our middlewares: request ids, latency and the body limit still apply.
        app.add_middleware(StatsReadCoalescer, board=board, metrics=metrics)
    install_common(
        app,
        registry=registry,
        checks={"postgres": reader.ping},
        max_body_bytes=MAX_QUERY_BODY_BYTES,
    )
    guard = read_guard(require_auth=settings.stats_require_auth)
    app.include_router(stats_router, dependencies=guard)
    stream = stream_router(
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        send_timeout_seconds=settings.stream_send_timeout_seconds,
    )
    app.include_router(stream, dependencies=guard)
    app.include_router(dashboard_router())  # public: a static page; its data is guarded
    app.include_router(transactions_router)  # always behind a JWT, whatever the guard
    install_error_handlers(app, {**QUERY_PROBLEMS, **STREAM_PROBLEMS})
    install_query_error_handlers(app)
    install_openapi(app)
    if settings.trusted_proxies:  # outermost: every other layer sees the client's address
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


class _Postgres:
    """The PostgreSQL side of the process: the readers' two pools (requests; streams) and the
    listener of the projector's notifications."""

    def __init__(self, config: QueryConfig, board: PositionBoard) -> None:
        self._pool = new_pool(config.database)
        self._stream_pool = new_pool(
            config.database.model_copy(
                update={"database_pool_min": 1, "database_pool_max": config.query.stream_pool_size}
            )
        )
        self.reader = PostgresProjectionReader(self._pool)
        self.stream_reader = PostgresProjectionReader(self._stream_pool)
        self.listener = PostgresPositionListener(
            dsn=config.database.database_url.get_secret_value(),
            board=board,
            recheck_seconds=config.progress_recheck_seconds,
        )

    async def open(self, stack: AsyncExitStack) -> None:
        """Open both pools (closed by `stack`) on a schema that is current: this role cannot
        migrate, `python -m projector migrate` runs first."""
        await stack.enter_async_context(self._pool)
        await stack.enter_async_context(self._stream_pool)
        async with self._pool.acquire() as conn:
            await check_schema(conn)


def _stats_events(stats: StatsService) -> Read:
    """The broadcaster's read, where the two features meet: a `/stats` document of the
    window, as a stream event."""

    async def read(window: Window) -> StreamEvent:
        document = StatsResponse.from_view(await stats.stats(window_seconds=window))
        return StreamEvent.of(window, document.model_dump_json(), document.as_of.offsets)

    return read
