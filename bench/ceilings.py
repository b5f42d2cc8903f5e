"""What Python can move through Kafka at all on this machine: the denominators of the batch
ingest and fold rows. Each runs as its own process, pinned like the service it is compared
with, and reports its CPU time from /proc.

- `produce`: a bare aiokafka producer (acks=all, idempotent) appends pre-serialized events
  with `create_batch`/`send_batch` (`bench.load.append_records`), then checks that the
  topic's end offsets grew by exactly that many.
- `consume`: a bare consumer drains the first `--events` records of a topic with `getmany`,
  decoding nothing.

`python -m bench.ceilings produce|consume --topic T --partitions P --events N` prints one
JSON line:
`{"events": N, "seconds": s, "cpu_seconds": c}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.load import append_records, synthetic_events
from bench.procs import BenchError, cpu_seconds, pinned
from shared.events import serialize
from shared.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class Ceiling:
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per event."""
        return 1e6 * self.cpu_seconds / self.events


def measure(mode: str, settings: KafkaSettings, events: int, *, cpus: str | None) -> Ceiling:
    """Run one ceiling as its own process pinned to `cpus` (the orchestrator's side)."""
    command = [sys.executable, "-m", "bench.ceilings", mode, "--topic", settings.topic]
    command += ["--partitions", str(settings.partitions), "--events", str(events)]
    done = subprocess.run(pinned(command, cpus), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"the {mode} ceiling failed: {done.stderr.strip()[-500:]}")
    return Ceiling(**json.loads(done.stdout))


async def produce(settings: KafkaSettings, events: int) -> dict[str, Any]:
    records = [(event.key, serialize(event)) for event in synthetic_events(events)]
    before = sum((await end_offsets(settings)).values())
    cpu = cpu_seconds(os.getpid())
    count, seconds = await append_records(settings, records)
    cpu = cpu_seconds(os.getpid()) - cpu
    landed = sum((await end_offsets(settings)).values()) - before
    if landed != count:
        msg = f"{count} events sent, {landed} landed"
        raise RuntimeError(msg)
    return {"events": count, "seconds": seconds, "cpu_seconds": cpu}


async def consume(settings: KafkaSettings, events: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    cpu = cpu_seconds(os.getpid())
    started = time.perf_counter()
    await consumer.start()
    try:
        partitions = topic_partitions(settings)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count = 0
        while count < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            count += sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()
    seconds = time.perf_counter() - started
    return {"events": count, "seconds": seconds, "cpu_seconds": cpu_seconds(os.getpid()) - cpu}


def topic_partitions(settings: KafkaSettings) -> list[TopicPartition]:
    return [TopicPartition(settings.topic, p) for p in range(settings.partitions)]


async def end_offsets(settings: KafkaSettings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(topic_partitions(settings))
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceilings", description=__doc__)
    parser.add_argument("mode", choices=["produce", "consume"])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)
    settings = KafkaSettings(topic=args.topic, partitions=args.partitions)
    ceiling = produce if args.mode == "produce" else consume
    result = asyncio.run(ceiling(settings, args.events))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
