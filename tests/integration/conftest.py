"""Fixtures for the real Kafka and PostgreSQL: a fresh database and a fresh topic per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.database import migrate
from shared.settings import KafkaSettings
from shared.topic import ensure_topic
from tests.integration import infra

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with infra.kafka_bootstrap() as address:
        yield address


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    with infra.database_url() as url:
        yield url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A new, migrated database for this test; dropped afterwards."""
    name = f"txstats_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = _with_database(admin_database_url, name)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield url
        await infra.drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def pg_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    assert pool is not None
    yield pool
    await pool.close()


TopicFactory = Callable[..., Awaitable[KafkaSettings]]


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> TopicFactory:
    """Make a new topic (6 partitions by default) and return settings that name it."""

    async def make(partitions: int = 6) -> KafkaSettings:
        settings = KafkaSettings(
            bootstrap_servers=kafka_bootstrap,
            topic=f"test.{uuid.uuid4().hex[:12]}",
            partitions=partitions,
        )
        await ensure_topic(settings)
        return settings

    return make
