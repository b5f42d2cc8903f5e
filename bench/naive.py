"""The naive projector, written only as the fold benchmark's baseline: per event, decode it
(the same `shared.events.deserialize`) and run ONE autocommitted UPDATE that folds the amount
into its partition's totals and stores the next offset in the same row (so the offset commit
is atomic with the fold). No batching, no pipelining; and it does less than the real one (no
dedupe, no time buckets), which makes it the stronger baseline.

`python -m bench.naive --topic T --database-url URL --limit N`
"""

from __future__ import annotations

import argparse
import asyncio
import os

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import EventDecodeError, deserialize
from shared.settings import KafkaSettings
from shared.topic import topic_partitions

ENSURE = """
INSERT INTO partition_totals (version, partition) SELECT 1, unnest($1::int[])
ON CONFLICT DO NOTHING"""
STORED = "SELECT partition, next_offset FROM partition_totals WHERE version = 1"
FOLD_ONE = """
UPDATE partition_totals SET tx_count = tx_count + 1, tx_sum = tx_sum + $3,
    tx_max = GREATEST(tx_max, $3), tx_min = LEAST(tx_min, $3), next_offset = $2 + 1
WHERE version = 1 AND partition = $1"""
SKIP_ONE = "UPDATE partition_totals SET next_offset = $2 + 1 WHERE version = 1 AND partition = $1"


async def run(*, bootstrap: str, topic: str, database_url: str, limit: int) -> int:
    conn = await asyncpg.connect(database_url)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    done = 0
    try:
        partitions = await topic_partitions(KafkaSettings(bootstrap_servers=bootstrap, topic=topic))
        assignment = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assignment)
        await conn.execute(ENSURE, partitions)
        stored = {row["partition"]: row["next_offset"] for row in await conn.fetch(STORED)}
        for tp in assignment:
            consumer.seek(tp, stored.get(tp.partition, 0))
        while done < limit:
            fetched = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, messages in fetched.items():
                for message in messages:
                    try:
                        event = deserialize(message.value)
                    except EventDecodeError:
                        await conn.execute(SKIP_ONE, tp.partition, message.offset)
                    else:
                        await conn.execute(FOLD_ONE, tp.partition, message.offset, event.amount)
                    done += 1
    finally:
        await consumer.stop()
        await conn.close()
    return done


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--limit", type=int, required=True, help="stop after this many events")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    args = parser.parse_args()
    asyncio.run(
        run(
            bootstrap=args.bootstrap,
            topic=args.topic,
            database_url=args.database_url,
            limit=args.limit,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
