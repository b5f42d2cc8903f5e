"""The benchmark's own corner of the shared stack: databases `bench_<hex>` and topics
`bench.<hex>`, created on demand and dropped at the end; tokens and service environments."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bench.procs import BenchError
from shared.auth import SCOPE_READ, SCOPE_WRITE, mint_token
from shared.database import migrate
from shared.settings import DatabaseSettings, JwtSettings, KafkaSettings
from shared.topic import ensure_topic

logger = logging.getLogger(__name__)

PARTITIONS = 6


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


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
        name = f"bench_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.databases.append(name)
        url = _with_database(self.admin_url, name)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return url

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        with contextlib.suppress(ValueError):
            self.databases.remove(name)

    async def cleanup(self) -> None:
        """Drop every database and delete every topic this run made."""
        for name in list(self.databases):
            await self.drop_database(_with_database(self.admin_url, name))
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
