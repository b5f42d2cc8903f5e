"""Composition root of the command API: settings, the Kafka producer, the FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.auth import AUTH_PROBLEMS, JwtVerifier
from shared.errors import install_error_handlers
from shared.logs import configure_logging
from shared.settings import CommandSettings, JwtSettings, KafkaSettings, LogSettings
from shared.topic import ensure_topic
from shared.web import install_common


def create_app() -> FastAPI:
    configure_logging(LogSettings().log_level)
    kafka = KafkaSettings()
    command = CommandSettings()
    verifier = JwtVerifier(JwtSettings())
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topic(kafka)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=command.producer_linger_ms,
        )
        await producer.start()
        app.state.producer = producer
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(title="Transactions command API", version="1.0.0", lifespan=lifespan)
    app.state.verifier = verifier

    async def kafka_ready() -> None:
        producer: AIOKafkaProducer = app.state.producer
        await producer.partitions_for(kafka.topic)

    install_common(
        app, registry=registry, checks={"kafka": kafka_ready}, max_body_bytes=command.max_body_bytes
    )
    install_error_handlers(app, AUTH_PROBLEMS)
    return app
