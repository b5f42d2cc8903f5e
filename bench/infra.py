"""The benchmark's own corner of the shared stack: databases `bench_<hex>` and topics
`bench.<hex>`, created on demand and dropped at the end; tokens and service environments."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bench.procs import BenchError
from shared.auth import SCOPE_READ, SCOPE_WRITE, mint_token
from shared.settings import DatabaseSettings, JwtSettings, KafkaSettings
from shared.topic import ensure_topic
from tests.scratch_database import create_database, drop_database, with_database

logger = logging.getLogger(__name__)

PARTITIONS = 6


@dataclass(slots=True)
class BenchInfra:
    kafka_bootstrap: str
    admin_url: str
    jwt: JwtSettings
    topics: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    @classmethod
    def from_environment(cls) -> BenchInfra:
        try:
            jwt = JwtSettings()
        except ValueError as err:
            raise BenchError("JWT_SECRET is not configured (run `make env`)") from err
        return cls(
            kafka_bootstrap=KafkaSettings().bootstrap_servers,
            admin_url=DatabaseSettings().database_url.get_secret_value(),
            jwt=jwt,
        )

    def token(self) -> str:
        return mint_token(
            self.jwt, subject="bench", scopes=[SCOPE_WRITE, SCOPE_READ], ttl_seconds=4 * 3600
        )

    async def new_topic(self, partitions: int = PARTITIONS) -> KafkaSettings:
        settings = KafkaSettings(
            bootstrap_servers=self.kafka_bootstrap,
            topic=f"bench.{uuid.uuid4().hex[:12]}",
            partitions=partitions,
        )
        self.topics.append(settings.topic)
        await ensure_topic(settings)
        return settings

    async def new_database(self) -> str:
        """A new, migrated database; its URL."""
        url = await create_database(self.admin_url, "bench")
        self.databases.append(url)
        return url

    async def empty_database(self) -> str:
        """A new database with no schema (another checkout's projector migrates it); its URL."""
        name = f"bench_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = with_database(self.admin_url, name)
        self.databases.append(url)
        return url

    async def drop_database(self, url: str) -> None:
        await drop_database(self.admin_url, url)
        with contextlib.suppress(ValueError):
            self.databases.remove(url)

    async def cleanup(self) -> None:
        """Drop every database and delete every topic this run made."""
        for url in list(self.databases):
            await self.drop_database(url)
        if self.topics:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_bootstrap)
            await admin.start()
            try:
                await admin.delete_topics(list(self.topics))
            finally:
                await admin.close()
            self.topics.clear()

    def service_env(
        self, *, topic: str | None = None, database_url: str | None = None, **extra: str
    ) -> dict[str, str]:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "JWT_SECRET": self.jwt.secret.get_secret_value(),
            "LOG_LEVEL": "WARNING",
            "PYTHONDONTWRITEBYTECODE": "1",
            **extra,
        }
        if topic is not None:
            env["KAFKA_TOPIC"] = topic
        if database_url is not None:
            env["DATABASE_URL"] = database_url
        return env


@contextlib.asynccontextmanager
async def bench_infra() -> AsyncIterator[BenchInfra]:
    infra = BenchInfra.from_environment()
    try:
        yield infra
    finally:
        await infra.cleanup()
