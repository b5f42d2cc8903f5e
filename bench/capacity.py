"""`python -m bench.capacity`: the storage and write-rate inputs of the capacity plan
(docs/capacity.md; `make figures` derives docs/figures/capacity.md from them and `make bench`).

Against the local stack (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`; scratch topic and database,
dropped or left to retention afterwards):

- the dedupe insert (`seen_transactions`, the projector's own statement) in batches of 20,000
  generated-UUID ids on one connection: rows/s, and bytes per million ids (table + index);
- the 1-second bucket upsert (the projector's own statement), 1,000 buckets a statement,
  every row an update of an existing bucket: rows/s;
- Kafka bytes per event: events serialized as the command API does, produced with acks=all
  and linger, and the topic's log segments on disk divided by the count (one replica).

Prints one line per figure and writes them to `.local/bench/capacity-<time>.json` (and
`capacity-latest.json`). Single process, single connection: rates are per writer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.procs import ROOT, cpu_seconds
from bench.report import RESULTS_DIR
from projector.adapters.postgres_store import PostgresProjectionTransaction
from projector.fold import Delta
from shared.events import TransactionRecorded, event_headers, serialize
from shared.settings import KafkaSettings
from shared.topic import ensure_topic
from shared.totals import Totals
from tests.provenance import Machine, commit, utc_now
from tests.scratch_database import create_database, drop_database

BATCH = 20_000
AMOUNT = Decimal("12.34")


Figures = dict[str, float]


async def dedupe(admin_url: str, ids: int) -> tuple[Figures, Figures]:
    """The dedupe insert's figures, then the bucket upsert's."""
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
                    await PostgresProjectionTransaction(conn, 1).insert_first_occurrences(
                        first, legacy_ids=False
                    )
            seconds, cpu = time.perf_counter() - started, cpu_seconds(backend) - cpu
            size = await conn.fetchval("SELECT pg_total_relation_size('seen_transactions')")
            inserts = {
                "rows": ids,
                "batch": BATCH,
                "rows_per_s": ids / seconds,
                "cpu_us_per_row": cpu / ids * 1e6,
                "mib_per_million_ids": size / ids * 1e6 / 2**20,
            }
            print(
                f"dedupe insert: {ids:,} ids in {seconds:.1f} s = {ids / seconds:,.0f} rows/s "
                f"(batches of {BATCH:,}, one connection); backend CPU {cpu:.1f} s = "
                f"{cpu / ids * 1e6:.1f} us per row = {ids / cpu:,.0f} rows per CPU-second; "
                "seen_transactions "
                f"{size / ids * 1e6 / 2**20:,.0f} MiB per million ids"
            )
            buckets = 1000
            three = Totals(3, AMOUNT * 3, AMOUNT, AMOUNT)
            delta = Delta(seconds={(0, 1_700_000_000 + s): three for s in range(buckets)})
            rounds = 200
            started, cpu = time.perf_counter(), cpu_seconds(backend)
            for _ in range(rounds):
                async with conn.transaction():
                    await PostgresProjectionTransaction(conn, 1).apply(
                        delta, next_offsets={}, log_end={}, poison=[]
                    )
            seconds, cpu = time.perf_counter() - started, cpu_seconds(backend) - cpu
            rows = rounds * buckets
            upserts = {
                "rows": rows,
                "batch": buckets,
                "rows_per_s": rows / seconds,
                "cpu_us_per_row": cpu / rows * 1e6,
            }
            print(
                f"bucket upsert: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s"
                f" ({buckets:,} buckets a statement); backend CPU {cpu / rows * 1e6:.1f} us per"
                f" row = {rows / cpu:,.0f} rows per CPU-second"
            )
            return inserts, upserts
        finally:
            await conn.close()
    finally:
        await drop_database(admin_url, url)


async def kafka_bytes(bootstrap: str, events: int, data_dirs: list[Path]) -> Figures:
    """Bytes of log segments per event on one replica (empty when none were found)."""
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
        return {}
    size = sum(p.stat().st_size for p in logs)
    sample = serialize(
        TransactionRecorded(uuid.uuid4(), str(uuid.uuid4()), AMOUNT, now, now, "bench")
    )
    print(
        f"kafka: {events:,} events = {size:,} bytes of log segments on one replica = "
        f"{size / events:.0f} bytes per event (value {len(sample)} bytes, key 36, headers, "
        f"batch overhead; linger 2 ms, no compression)"
    )
    return {"events": events, "bytes_per_event": size / events, "value_bytes": len(sample)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity")
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    database = os.environ.get("DATABASE_URL", "postgresql://txstats@127.0.0.1:5433/txstats")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    local = ROOT / ".local"
    data_dirs = [local / "kafka" / "data", *sorted(local.glob("kafka-cluster/node*/data"))]
    started = utc_now()
    inserts, upserts = asyncio.run(dedupe(database, args.ids))
    log = asyncio.run(kafka_bytes(bootstrap, args.events, data_dirs))
    document = {
        "started": started,
        "commit": commit(),
        "machine": Machine.current().to_json(),
        "dedupe_insert": inserts,
        "bucket_upsert": upserts,
        "kafka_log": log,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2)
    stamp = started.replace("-", "").replace(":", "")
    for name in (f"capacity-{stamp}", "capacity-latest"):
        (RESULTS_DIR / f"{name}.json").write_text(text)
    print(f"written: {(RESULTS_DIR / f'capacity-{stamp}.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
