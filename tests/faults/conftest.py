"""Fixtures of the fault suite: a private stack for the session, a fresh topic and a fresh
database per test, the services of a test stopped when it ends, and the report its figures
go to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from shared.settings import KafkaSettings
from shared.topic import ensure_topic
from tests.faults import harness, report
from tests.scratch_database import create_database, drop_database


@pytest.fixture(scope="session")
def stack() -> Iterator[harness.PrivateStack]:
    """Our own Kafka and PostgreSQL (other ports, other data directory); stopped at the end
    of the session. Tests that need no stack never start it."""
    with harness.private_stack() as private:
        yield private


@pytest.fixture
async def database_url(stack: harness.PrivateStack) -> AsyncIterator[str]:
    """A new, migrated database on the private PostgreSQL; dropped afterwards."""
    url = await create_database(stack.admin_database_url, "faults")
    yield url
    await drop_database(stack.admin_database_url, url)


TopicFactory = Callable[..., Awaitable[KafkaSettings]]


@pytest.fixture(scope="session")
def fault_report() -> Iterator[report.Collector]:
    """The session's figures, merged into .local/reports/faults.{json,md} at its end."""
    collector = report.Collector()
    yield collector
    collector.write()


@pytest.fixture
def report_row(fault_report: report.Collector, request: pytest.FixtureRequest) -> report.AddRow:
    """Add a row of figures to the report, under this test's name (after its assertions)."""

    def add(row: report.Row) -> None:
        fault_report.add(request.node.nodeid, row)

    return add


@pytest.fixture
def new_topic(stack: harness.PrivateStack) -> TopicFactory:
    """Make a new topic on the private broker (6 partitions by default)."""

    async def make(partitions: int = 6) -> KafkaSettings:
        return await harness.create_topic(stack, partitions)

    return make


@pytest.fixture
async def deployment(
    new_topic: TopicFactory, database_url: str, tmp_path: Path
) -> AsyncIterator[harness.Deployment]:
    """A topic and a database for this test's services; every service started through it is
    stopped at the end (its log stays in tmp_path)."""
    deployed = harness.Deployment(
        kafka=await new_topic(), database_url=database_url, tmp_path=tmp_path
    )
    try:
        yield deployed
    finally:
        deployed.stop_all()


@pytest.fixture(scope="session")
def cluster() -> Iterator[harness.PrivateCluster]:
    """A private 3-node KRaft cluster for the crash tests, shared by them; stopped at the end
    of the session. Tests that need no cluster never start it."""
    with harness.private_cluster() as private:
        yield private


@pytest.fixture
async def cluster_deployment(
    cluster: harness.PrivateCluster,
    stack: harness.PrivateStack,
    database_url: str,
    tmp_path: Path,
) -> AsyncIterator[harness.Deployment]:
    """Like `deployment`, on a topic of the 3-node cluster (replication factor 3,
    min.insync.replicas 2); the database is on the private PostgreSQL."""
    kafka = KafkaSettings(
        bootstrap_servers=cluster.bootstrap,
        topic=f"crash.{uuid.uuid4().hex[:12]}",
        partitions=6,
        replication_factor=3,
    )
    await ensure_topic(kafka)
    deployed = harness.Deployment(kafka=kafka, database_url=database_url, tmp_path=tmp_path)
    try:
        yield deployed
    finally:
        deployed.stop_all()
