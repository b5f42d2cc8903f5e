"""Helpers for integration tests: publish events, run real projector processes, poll."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.structs import RecordMetadata
from pydantic import SecretStr

from query_api.config import QueryConfig
from query_api.main import create_app
from shared.events import TransactionRecorded, event_headers, serialize
from shared.settings import DatabaseSettings, JwtSettings, KafkaSettings, LogSettings, QuerySettings
from tests.scratch_database import ROLES, as_role
from tests.unit.command_kit import SECRET

ROOT = Path(__file__).resolve().parents[2]


def event(
    amount: str | Decimal,
    *,
    transaction_id: str | None = None,
    occurred_at: datetime | None = None,
) -> TransactionRecorded:
    now = datetime.now(UTC)
    return TransactionRecorded(
        event_id=uuid.uuid4(),
        transaction_id=transaction_id or uuid.uuid4().hex,
        amount=Decimal(amount),
        occurred_at=occurred_at or now,
        recorded_at=now,
        producer="test",
    )


async def publish_raw(
    settings: KafkaSettings, messages: Iterable[tuple[bytes, bytes]]
) -> list[RecordMetadata]:
    """Append (key, value) messages to the topic, pipelined, acks=all; where each landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    try:
        pending = [
            await producer.send(settings.topic, value, key=key, headers=event_headers())
            for key, value in messages
        ]
        return list(await asyncio.gather(*pending))
    finally:
        await producer.stop()


async def publish(settings: KafkaSettings, events: Iterable[TransactionRecorded]) -> None:
    await publish_raw(settings, ((e.key, serialize(e)) for e in events))


@dataclass(frozen=True)
class Stats:
    count: int
    sum: Decimal
    max: Decimal | None
    min: Decimal | None


def ground_truth(events: Iterable[TransactionRecorded]) -> Stats:
    """Expected all-time stats: each transaction id counted once (its first occurrence)."""
    first: dict[str, Decimal] = {}
    for e in events:
        first.setdefault(e.transaction_id, e.amount)
    amounts = list(first.values())
    return Stats(len(amounts), sum(amounts, Decimal(0)), max(amounts), min(amounts))


ACTIVE_TOTALS = """
SELECT coalesce(sum(tx_count), 0)::bigint AS count, coalesce(sum(tx_sum), 0) AS sum,
       max(tx_max) AS max, min(tx_min) AS min, coalesce(sum(next_offset), 0)::bigint AS consumed
FROM partition_totals WHERE version = (SELECT version FROM projection_active)"""


async def projection_stats(pool: asyncpg.Pool) -> tuple[Stats, int]:
    row = await pool.fetchrow(ACTIVE_TOTALS)
    assert row is not None
    return Stats(row["count"], row["sum"], row["max"], row["min"]), row["consumed"]


async def group_members(settings: KafkaSettings, group_id: str) -> list[set[int]]:
    """The partitions of `settings.topic` each live member of the consumer group holds, as
    the broker's group coordinator reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    members: list[set[int]] = []
    for group in response.groups:
        for member in group[5]:
            raw = member[-1]  # empty while the group rebalances
            assignment = ConsumerProtocolMemberAssignment.decode(raw).assignment if raw else []
            members.append({p for topic, ps in assignment if topic == settings.topic for p in ps})
    return members


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout} s"
            raise TimeoutError(msg)
        await asyncio.sleep(interval)


class ProjectorProcess:
    """A real `python -m projector run` process, killable with any signal."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        database_url: str,
        group_id: str,
        log_path: Path,
        **extra: str,
    ) -> None:
        self.log_path = log_path
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_TOPIC": kafka.topic,
            "DATABASE_URL": as_role(database_url, ROLES.projector),
            "PROJECTOR_GROUP_ID": group_id,
            "PROJECTOR_HTTP_PORT": "0",
            "LOG_LEVEL": "WARNING",
            **extra,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> ProjectorProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "projector", *(args or ("run",))],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("ab"),
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)


@asynccontextmanager
async def running_projector(
    kafka: KafkaSettings, database_url: str, log_path: Path
) -> AsyncIterator[ProjectorProcess]:
    """A live projector process in a group of its own, stopped on the way out."""
    process = ProjectorProcess(
        kafka=kafka, database_url=database_url, group_id=uuid.uuid4().hex, log_path=log_path
    ).start()
    try:
        yield process
    finally:
        process.stop()


@asynccontextmanager
async def query_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    config = QueryConfig(
        database=DatabaseSettings(database_url=SecretStr(as_role(database_url, ROLES.query))),
        jwt=JwtSettings(secret=SecretStr(SECRET)),
        query=QuerySettings(),
        log=LogSettings(),
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://query") as client,
    ):
        yield client
