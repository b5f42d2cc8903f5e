"""What docs/operations.md promises of `python -m projector rebuild` and `status`, checked from the
outside: each command runs as its own process on a real Kafka and PostgreSQL, and the tests
read its exit code, its stdout (JSON) and the database, never the projector's internals.

`--until` (offsets and a record time), `--keep-old` then `--abort`, `status`, Ctrl-C (exit
130, the partial version left for `--abort`), a drop that fails after the swap (still a
success, the leftover removed by `--abort`) and exit 5 (a live projection that advances
faster than the rebuild catches up).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import TransactionRecorded, deserialize
from shared.settings import KafkaSettings
from tests.integration.conftest import TopicFactory
from tests.integration.support import (
    ROOT,
    ProjectorProcess,
    Stats,
    event,
    ground_truth,
    projection_stats,
    publish,
    wait_until,
)
from tests.scratch_database import ROLES, as_role

EXIT_INTERRUPTED = 130
EXIT_BEHIND = 5


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    event: TransactionRecorded


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    log: str

    def report(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed


class Cli:
    """`python -m projector ...` against one topic and one database."""

    def __init__(self, kafka: KafkaSettings, database_url: str, tmp: Path) -> None:
        self.kafka = kafka
        self.database_url = database_url
        self.tmp = tmp
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_TOPIC": kafka.topic,
            "DATABASE_URL": as_role(database_url, ROLES.projector),
            "PROJECTOR_HTTP_PORT": "0",
            "LOG_LEVEL": "WARNING",
        }

    async def start(self, *args: str, **env: str) -> tuple[asyncio.subprocess.Process, Path]:
        log = self.tmp / f"cli-{uuid.uuid4().hex[:8]}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "projector",
                *args,
                cwd=ROOT,
                env={**self.env, **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        return process, log

    async def run(self, *args: str, timeout: float = 180, **env: str) -> Finished:
        process, log = await self.start(*args, **env)
        return await self.finish(process, log, timeout=timeout)

    async def finish(
        self, process: asyncio.subprocess.Process, log: Path, *, timeout: float = 180
    ) -> Finished:
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Finished(process.returncode, stdout.decode(), log.read_text(errors="replace"))

    async def status(self) -> dict[str, Any]:
        done = await self.run("status", timeout=60)
        assert done.code == 0, done.log
        return done.report()

    async def fold_live(self, pool: asyncpg.Pool, records: int) -> None:
        """Let a live projector fold the first `records` records of the log, then stop it."""
        live = ProjectorProcess(
            kafka=self.kafka,
            database_url=self.database_url,
            group_id=uuid.uuid4().hex,
            log_path=self.tmp / "live.log",
        ).start()
        try:
            await wait_until(lambda: consumed_at_least(pool, records), timeout=120)
        finally:
            live.stop()


async def consumed_at_least(pool: asyncpg.Pool, records: int) -> bool:
    _, consumed = await projection_stats(pool)
    return consumed >= records


async def read_log(kafka: KafkaSettings) -> list[Record]:
    """Every record of the topic with its position and timestamp, as the broker keeps it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(kafka.topic, p) for p in range(kafka.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Record] = []
        async with asyncio.timeout(60):
            while len(records) < sum(ends.values()):
                batches = await consumer.getmany(timeout_ms=500)
                for tp, messages in batches.items():
                    records += [
                        Record(tp.partition, m.offset, m.timestamp, deserialize(m.value))
                        for m in messages
                    ]
    finally:
        await consumer.stop()
    return records


async def log_ends(kafka: KafkaSettings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    await consumer.start()
    try:
        partitions = [TopicPartition(kafka.topic, p) for p in range(kafka.partitions)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


def totals(stats: Stats) -> dict[str, Any]:
    """`stats` as the rebuild reports totals (money as strings)."""

    def money(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "count": stats.count,
        "sum": money(stats.sum),
        "max": money(stats.max),
        "min": money(stats.min),
    }


def amounts(count: int) -> list[TransactionRecorded]:
    return [event(f"{n}.{n % 100:02d}") for n in range(1, count + 1)]


def versions(status: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {entry["version"]: entry for entry in status["versions"]}


async def test_status_reports_the_active_version_its_offsets_count_and_lag(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    cli = Cli(kafka, database_url, tmp_path)
    events = amounts(300)
    await publish(kafka, events)
    await cli.fold_live(pg_pool, len(events))
    by_partition = {p: 0 for p in range(kafka.partitions)}
    for record in await read_log(kafka):
        by_partition[record.partition] += 1

    status = await cli.status()

    assert status["active_version"] == 1
    [only] = status["versions"]
    assert (only["version"], only["state"], only["count"], only["lag"]) == (1, "active", 300, 0)
    assert only["legacy_ids"] is False
    assert {int(p): o for p, o in only["offsets"].items()} == by_partition


async def test_keep_old_keeps_the_replaced_version_until_abort_removes_it(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    cli = Cli(kafka, database_url, tmp_path)
    events = amounts(500)
    await publish(kafka, events)
    await cli.fold_live(pg_pool, len(events))

    rebuilt = await cli.run("rebuild", "--keep-old")
    assert rebuilt.code == 0, rebuilt.log
    assert rebuilt.report()["result"] == "verified and swapped"
    kept = versions(await cli.status())
    assert (kept[1]["state"], kept[1]["count"]) == ("retired", 500)  # its rows are still there
    assert (kept[2]["state"], kept[2]["count"]) == ("active", 500)

    aborted = await cli.run("rebuild", "--abort")
    assert aborted.code == 0, aborted.log
    assert aborted.report() == {"removed_versions": [1]}
    after = await cli.status()
    assert list(versions(after)) == [2]
    assert after["active_version"] == 2
    assert await pg_pool.fetchval("SELECT count(*) FROM partition_totals WHERE version = 1") == 0


async def test_until_folds_up_to_offsets_or_a_record_time_and_never_swaps(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    cli = Cli(kafka, database_url, tmp_path)
    events = amounts(600)
    for start in range(0, len(events), 100):  # several sends: a spread of record times
        await publish(kafka, events[start : start + 100])
    await cli.fold_live(pg_pool, len(events))
    log = await read_log(kafka)
    live_before, _ = await projection_stats(pg_pool)

    # Offsets: partitions 0 and 3 up to (not including) 10 and 25, the others to their end.
    until = {0: 10, 3: 25}
    by_offsets = await cli.run("rebuild", "--until", "0=10,3=25")
    assert by_offsets.code == 0, by_offsets.log
    expected = [r.event for r in log if r.offset < until.get(r.partition, r.offset + 1)]
    assert 0 < len(expected) < len(log)
    report = by_offsets.report()
    assert report["totals"] == totals(ground_truth(expected))
    assert {int(p): o for p, o in report["until"].items()} == {
        p: until.get(p, sum(1 for r in log if r.partition == p)) for p in range(6)
    }

    # A record time: per partition, every record before the first one stamped at or after it.
    stamps = sorted({r.timestamp_ms for r in log})
    cut = stamps[len(stamps) // 2]
    first_at_or_after = {
        p: min(
            (r.offset for r in log if r.partition == p and r.timestamp_ms >= cut), default=len(log)
        )
        for p in range(6)
    }
    before = [r.event for r in log if r.offset < first_at_or_after[r.partition]]
    assert 0 < len(before) < len(log)
    moment = datetime.fromtimestamp(cut / 1000, UTC).isoformat(timespec="milliseconds")
    by_time = await cli.run("rebuild", "--until", moment)
    assert by_time.code == 0, by_time.log
    assert by_time.report()["totals"] == totals(ground_truth(before))

    # Audits only: the live projection is still version 1, with the same totals.
    status = await cli.status()
    assert status["active_version"] == 1
    assert versions(status)[1]["state"] == "active"
    live_after, _ = await projection_stats(pg_pool)
    assert live_after == live_before == ground_truth(events)


async def test_ctrl_c_exits_130_leaving_the_live_projection_and_a_version_to_abort(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    cli = Cli(kafka, database_url, tmp_path)
    events = [event(f"{n % 997 + 1}.00") for n in range(20_000)]
    await publish(kafka, events)
    await cli.fold_live(pg_pool, len(events))

    process, log = await cli.start("rebuild", PROJECTOR_MAX_BATCH="100")

    async def rebuilding() -> bool:
        folded = await pg_pool.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM partition_totals WHERE version = 2"
        )
        return bool(folded > 0)

    await wait_until(rebuilding, timeout=120)
    process.send_signal(signal.SIGINT)
    interrupted = await cli.finish(process, log, timeout=60)

    assert interrupted.code == EXIT_INTERRUPTED, interrupted.log
    status = await cli.status()
    assert status["active_version"] == 1
    partial = versions(status)[2]
    assert partial["state"] == "building"
    assert 0 < partial["count"] < len(events)
    assert (await projection_stats(pg_pool))[0] == ground_truth(events)

    aborted = await cli.run("rebuild", "--abort")
    assert aborted.report() == {"removed_versions": [2]}
    assert list(versions(await cli.status())) == [1]


async def test_a_drop_that_fails_after_the_swap_still_succeeds_and_abort_cleans_up(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    cli = Cli(kafka, database_url, tmp_path)
    events = amounts(400)
    await publish(kafka, events)
    await cli.fold_live(pg_pool, len(events))
    await pg_pool.execute(
        "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'deleting version 1 is refused by the test'; END $$"
    )
    await pg_pool.execute(
        "CREATE TRIGGER refuse_delete BEFORE DELETE ON partition_totals FOR EACH ROW"
        " WHEN (OLD.version = 1) EXECUTE FUNCTION refuse_delete()"
    )

    rebuilt = await cli.run("rebuild")

    assert rebuilt.code == 0, rebuilt.log
    assert rebuilt.report()["result"] == "verified and swapped"
    assert "--abort" in rebuilt.log  # it says so, and how to clean up
    status = await cli.status()
    assert status["active_version"] == 2
    assert versions(status)[1]["state"] == "retired"
    assert (await projection_stats(pg_pool))[0] == ground_truth(events)

    await pg_pool.execute("DROP TRIGGER refuse_delete ON partition_totals")
    aborted = await cli.run("rebuild", "--abort")
    assert aborted.report() == {"removed_versions": [1]}
    assert list(versions(await cli.status())) == [2]


@pytest.mark.slow
async def test_a_live_projection_that_outruns_the_rebuild_exits_5(
    kafka_settings: TopicFactory, database_url: str, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """No live projector runs: the test plays it, keeping the active version's stored offsets
    a fixed distance ahead of what the rebuild has folded, so each catch-up round ends with
    the live version further ahead than the rebuild may lock for. The rebuild must give up
    (exit 5), resumable, with nothing swapped."""
    kafka = await kafka_settings()
    cli = Cli(kafka, database_url, tmp_path)
    per_partition = 50_000
    lead = 2_000  # per partition: 12,000 in all, above the rebuild's 5,000 allowance
    events = [event(f"{n % 997 + 1}.00") for n in range(6 * per_partition)]
    await publish(kafka, events)
    ends = await log_ends(kafka)
    await pg_pool.executemany(
        "INSERT INTO partition_totals (version, partition, next_offset, log_end_offset,"
        " tx_count, tx_sum, tx_max, tx_min) VALUES (1, $1, $2, $3, 0, 0, NULL, NULL)",
        [(p, min(lead, ends[p]), ends[p]) for p in range(6)],
    )

    process, log = await cli.start("rebuild", PROJECTOR_MAX_BATCH="2000")
    done = asyncio.create_task(cli.finish(process, log, timeout=600))
    while not done.done():  # the "live projector": always `lead` ahead of the rebuild
        rows = await pg_pool.fetch(
            "SELECT partition, next_offset FROM partition_totals WHERE version = 2"
        )
        rebuilt = {row["partition"]: row["next_offset"] for row in rows}
        await pg_pool.executemany(
            "UPDATE partition_totals SET next_offset = greatest(next_offset, $2)"
            " WHERE version = 1 AND partition = $1",
            [(p, min(rebuilt.get(p, 0) + lead, ends[p])) for p in range(6)],
        )
        await asyncio.wait({done}, timeout=0.02)
    behind = done.result()

    assert behind.code == EXIT_BEHIND, behind.log
    status = await cli.status()
    assert status["active_version"] == 1
    assert versions(status)[2]["state"] == "building"  # resumable
