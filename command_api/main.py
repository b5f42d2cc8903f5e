"""Composition root of the command API: configuration, the event publisher, the recorder, the
FastAPI app. `uvicorn --factory command_api.main:create_app` builds everything from the
environment; tests inject the configuration, a publisher (then no Kafka producer is made and
the caller owns the publisher's lifecycle) and the clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from command_api.adapters.kafka_publisher import KafkaEventPublisher
from command_api.config import CommandConfig
from command_api.deps import CommandServices, install_services
from command_api.errors import COMMAND_PROBLEMS
from command_api.instrumented_publisher import InstrumentedPublisher
from command_api.metrics import CommandMetrics
from command_api.models import TransactionBatchRequest, TransactionRequest
from command_api.ports import EventPublisher
from command_api.routes import build_router
from command_api.services import Clock, TransactionRecorder
from shared.auth import JwtVerifier, VerifiedTokens, bearer_security_scheme
from shared.errors import install_error_handlers
from shared.logs import configure_logging
from shared.openapi import install_openapi
from shared.runtime import tune_gc
from shared.web import install_common

DESCRIPTION = """\
The write side: producers post transactions; each becomes a `TransactionRecorded` event in the
Kafka log (key = `transaction_id`). A 201 is sent only after the log acknowledged the event
(`acks=all`, idempotent producer). Amounts are exact decimals (JSON numbers are parsed from
their text, never through a float). Every error is `application/problem+json`.
"""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: CommandConfig | None = None,
    *,
    publisher: EventPublisher | None = None,
    clock: Clock = _utc_now,
) -> FastAPI:
    if config is None:
        config = CommandConfig.from_environment()
        configure_logging(config.log.log_level, config.log.log_format)
    verifier = VerifiedTokens(JwtVerifier(config.jwt))
    registry = CollectorRegistry()
    metrics = CommandMetrics(registry)
    kafka: KafkaEventPublisher | None = None
    if publisher is None:
        kafka = publisher = KafkaEventPublisher(config.kafka, config.command)
    log = InstrumentedPublisher(publisher, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if kafka is not None:
            await kafka.start()
            tune_gc()  # a process of its own (the tests build many apps in one)
        try:
            yield
        finally:
            if kafka is not None:
                await kafka.stop()

    app = FastAPI(
        title="Transactions command API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_common (shared/docs.py)
        redoc_url=None,
        # We export Prometheus metrics, not OpenTelemetry: without this, FastAPI looks up the
        # global OpenTelemetry providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_services(
        app,
        CommandServices(
            verifier=verifier,
            clock=clock,
            max_clock_skew=timedelta(seconds=config.clock_skew.max_clock_skew_seconds),
            recorder=TransactionRecorder(publisher=log, clock=clock),
        ),
    )
    # The write routes join the app's own router rather than being included: FastAPI matches
    # an included router twice per request (to choose it, then to handle it).
    app.router.routes.extend(build_router(max_body_bytes=config.command.max_body_bytes).routes)
    install_common(
        app,
        registry=registry,
        checks={"kafka": log.check_ready},
        max_body_bytes=config.command.max_body_bytes,
        refusals=metrics.count_refusal,
    )
    install_error_handlers(app, COMMAND_PROBLEMS)
    install_openapi(
        app,
        models=[TransactionRequest, TransactionBatchRequest],
        security_schemes=bearer_security_scheme(),
    )
    return app
