"""`python -m bench.capacity`: the storage and write-rate inputs of docs/CAPACITY.md.

Against the local stack (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`; scratch topic and database,
dropped or left to retention afterwards):

- the dedupe insert (`seen_transactions`, the projector's own statement) in batches of 20,000
  generated-UUID ids on one connection: rows/s, and bytes per million ids (table + index);
- the 1-second bucket upsert (the projector's own statement), 1,000 buckets a statement,
  every row an update of an existing bucket: rows/s;
- Kafka bytes per event: events serialized as the command API does, produced with acks=all
  and linger, and the topic's log segments on disk divided by the count (one replica).

Prints one line per figure. Single process, single connection: rates are per writer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.procs import ROOT, cpu_seconds
from projector.adapters.postgres_store import UPSERT_SECONDS, insert_first_occurrences
from shared.events import TransactionRecorded, event_headers, serialize
from shared.settings import KafkaSettings
from shared.topic import ensure_topic
from tests.scratch_database import create_database, drop_database

BATCH = 20_000
AMOUNT = Decimal("12.34")


async def dedupe(admin_url: str, ids: int) -> None:
    url = await create_database(admin_url, "capacity")
    try:
        conn = await asyncpg.connect(url)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        try:
            started, cpu = time.perf_counter(), cpu_seconds(backend)
            for _ in range(ids // BATCH):
                batch = [str(uuid.uuid4()) for _ in range(BATCH)]
                now = [datetime.now(UTC)] * BATCH
                positions = [0] * BATCH, list(range(BATCH))
                first = (batch, *positions, [AMOUNT] * BATCH, now, now, ["bench"] * BATCH)
                async with conn.transaction():  # each id with its first occurrence, as folded
                    await insert_first_occurrences(conn, 1, first)
            seconds, cpu = time.perf_counter() - started, cpu_seconds(backend) - cpu
            size = await conn.fetchval("SELECT pg_total_relation_size('seen_transactions')")
            print(
                f"dedupe insert: {ids:,} ids in {seconds:.1f} s = {ids / seconds:,.0f} rows/s "
                f"(batches of {BATCH:,}, one connection); backend CPU {cpu:.1f} s = "
                f"{cpu / ids * 1e6:.1f} us per row = {ids / cpu:,.0f} rows per CPU-second; "
                "seen_transactions "
                f"{size / ids * 1e6 / 2**20:,.0f} MiB per million ids"
            )
            buckets = 1000
            seconds_col = list(range(1_700_000_000, 1_700_000_000 + buckets))
            counts = [3] * buckets
            sums = maxes = mins = [AMOUNT] * buckets
            rounds = 200
            started, cpu = time.perf_counter(), cpu_seconds(backend)
            for _ in range(rounds):
                async with conn.transaction():
                    await conn.execute(UPSERT_SECONDS, 1, seconds_col, counts, sums, maxes, mins)
            seconds, cpu = time.perf_counter() - started, cpu_seconds(backend) - cpu
            rows = rounds * buckets
            print(
                f"bucket upsert: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s"
                f" ({buckets:,} buckets a statement); backend CPU {cpu / rows * 1e6:.1f} us per"
                f" row = {rows / cpu:,.0f} rows per CPU-second"
            )
        finally:
            await conn.close()
    finally:
        await drop_database(admin_url, url)


async def kafka_bytes(bootstrap: str, events: int, data_dirs: list[Path]) -> None:
    settings = KafkaSettings(
        bootstrap_servers=bootstrap, topic=f"capacity.{uuid.uuid4().hex[:12]}", partitions=6
    )
    await ensure_topic(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    try:
        now = datetime.now(UTC)
        acks = []
        for number in range(events):
            event = TransactionRecorded(
                uuid.uuid4(), str(uuid.uuid4()), Decimal(number % 10**7) / 100, now, now, "bench"
            )
            acks.append(
                await producer.send(
                    settings.topic, serialize(event), key=event.key, headers=event_headers()
                )
            )
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    replicas = [list(d.glob(f"{settings.topic}-*/*.log")) for d in data_dirs]
    logs = next((found for found in replicas if found), [])  # one replica's segments
    if not logs:
        print(f"kafka: no log segments of {settings.topic} under {data_dirs}")
        return
    size = sum(p.stat().st_size for p in logs)
    sample = serialize(
        TransactionRecorded(uuid.uuid4(), str(uuid.uuid4()), AMOUNT, now, now, "bench")
    )
    print(
        f"kafka: {events:,} events = {size:,} bytes of log segments on one replica = "
        f"{size / events:.0f} bytes per event (value {len(sample)} bytes, key 36, headers, "
        f"batch overhead; linger 2 ms, no compression)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity")
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    database = os.environ.get("DATABASE_URL", "postgresql://txstats@127.0.0.1:5433/txstats")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    local = ROOT / ".local"
    data_dirs = [local / "kafka" / "data", *sorted(local.glob("kafka-cluster/node*/data"))]
    asyncio.run(dedupe(database, args.ids))
    asyncio.run(kafka_bytes(bootstrap, args.events, data_dirs))


if __name__ == "__main__":
    main()
