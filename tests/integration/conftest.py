"""Fixtures for the real Kafka and PostgreSQL: a fresh database and a fresh topic per test."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest

from shared.settings import KafkaSettings
from shared.topic import ensure_topic
from tests.integration import infra
from tests.scratch_database import create_database, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with infra.kafka_bootstrap() as address:
        yield address


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    with infra.database_url() as url:
        yield url


@pytest.fixture
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A new, migrated database for this test; dropped afterwards."""
    url = await create_database(admin_database_url, "txstats_test")
    yield url
    if not await drop_database(admin_database_url, url):
        warnings.warn(f"could not drop test database {url}", stacklevel=1)


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
