"""Composition root of the query API: settings, the asyncpg pool, the FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.auth import AUTH_PROBLEMS, JwtVerifier
from shared.database import create_pool, migrate, ping
from shared.errors import install_error_handlers
from shared.logs import configure_logging
from shared.settings import DatabaseSettings, JwtSettings, LogSettings
from shared.web import install_common

MAX_QUERY_BODY_BYTES = 64 * 1024


def create_app() -> FastAPI:
    configure_logging(LogSettings().log_level)
    database = DatabaseSettings()
    verifier = JwtVerifier(JwtSettings())
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(database)
        async with pool.acquire() as conn:
            await migrate(conn)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="Transactions query API", version="1.0.0", lifespan=lifespan)
    app.state.verifier = verifier

    async def postgres_ready() -> None:
        await ping(app.state.pool)

    install_common(
        app,
        registry=registry,
        checks={"postgres": postgres_ready},
        max_body_bytes=MAX_QUERY_BODY_BYTES,
    )
    install_error_handlers(app, AUTH_PROBLEMS)
    return app
