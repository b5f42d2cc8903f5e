"""Standard Kafka tooling sees the projector's consumer group, its offsets and its lag: the
projector commits to Kafka what it committed to PostgreSQL (for monitoring only), and after a
burst and a quiet period the latest of it, not one batch behind."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.settings import KafkaSettings
from tests.integration.conftest import TopicFactory
from tests.integration.support import ProjectorProcess, event, publish, wait_until

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = ROOT / ".local" / "kafka-libs"
GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


async def describe_group(bootstrap: str, group: str) -> dict[int, tuple[int, int]]:
    """`kafka-consumer-groups.sh --describe`, run from the broker's own jars: per partition,
    (CURRENT-OFFSET, LAG)."""
    process = await asyncio.create_subprocess_exec(
        "java",
        "-cp",
        f"{KAFKA_LIBS}/*",
        GROUP_COMMAND,
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--group",
        group,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    rows: dict[int, tuple[int, int]] = {}
    for line in out.decode().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] == group and fields[3].isdigit():
            rows[int(fields[2])] = (int(fields[3]), int(fields[5]))
    return rows


@pytest.mark.skipif(
    shutil.which("java") is None or not KAFKA_LIBS.is_dir(),
    reason="needs the local stack's Kafka jars (.local/kafka-libs) and java",
)
async def test_kafka_consumer_groups_shows_the_projector_group_and_its_lag(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings(partitions=3)
    events = [event("1.00") for _ in range(300)]
    await publish(kafka, events)
    group = f"lag-{uuid.uuid4().hex[:8]}"
    projector = ProjectorProcess(
        kafka=kafka, database_url=database_url, group_id=group, log_path=tmp_path / "p.log"
    ).start()
    try:

        async def stored() -> dict[int, int]:
            rows = await pg_pool.fetch("SELECT partition, next_offset FROM partition_totals")
            return {row["partition"]: row["next_offset"] for row in rows}

        async def folded() -> bool:
            return sum((await stored()).values()) == len(events)

        await wait_until(folded, timeout=60)
        expected = {p: (offset, 0) for p, offset in (await stored()).items()}

        async def tool_agrees() -> bool:
            return await describe_group(kafka.bootstrap_servers, group) == expected

        await wait_until(tool_agrees, timeout=60, interval=1)
    finally:
        projector.stop()


async def group_offsets(kafka: KafkaSettings, group: str) -> dict[int, int]:
    """The offsets the consumer group committed, per partition of the topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == kafka.topic}


async def test_after_a_burst_and_a_quiet_period_the_group_offsets_equal_the_stored_ones(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings(partitions=3)
    group = f"quiet-{uuid.uuid4().hex[:8]}"
    projector = ProjectorProcess(  # small batches: many commits, each reporting, in the burst
        kafka=kafka,
        database_url=database_url,
        group_id=group,
        log_path=tmp_path / "p.log",
        PROJECTOR_MAX_BATCH="20",
    ).start()
    try:

        async def stored() -> dict[int, int]:
            rows = await pg_pool.fetch("SELECT partition, next_offset FROM partition_totals")
            return {row["partition"]: row["next_offset"] for row in rows}

        events = [event("1.00") for _ in range(3000)]
        await publish(kafka, events)

        async def folded() -> bool:
            return sum((await stored()).values()) == len(events)

        await wait_until(folded, timeout=60)
        expected = await stored()  # the burst is over: nothing more is folded

        async def reported() -> bool:
            return await group_offsets(kafka, group) == expected

        await wait_until(reported, timeout=30, interval=0.5)
    finally:
        projector.stop()
