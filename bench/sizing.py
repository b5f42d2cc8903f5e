"""The capacity plan's arithmetic: the measured inputs of one `make bench` run and one
`python -m bench.capacity` run, the assumptions as named constants, and the sizing derived
from both, as the Markdown page `make figures` publishes (docs/figures/capacity.md).

docs/capacity.md explains the plan in words; every number of the plan is here, so the
words and the figures cannot disagree."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shared.settings import KafkaSettings
from tests.provenance import Machine

RATES = (10_000, 100_000, 1_000_000)  # transactions per second to size for
HEADROOM = 0.7  # A1
MIN_PROCESSES = 2  # A2
REPLICATION = 3  # A5
PARTITIONS_PER_PROJECTOR = 2  # A4
SHARDS = 8  # A6
TODAY_PARTITIONS: int = KafkaSettings.model_fields["partitions"].default
SECONDS_PER_DAY = 86_400
SATURATED = 0.9  # a machine this busy cannot tell a scaling limit of ours from its own

ASSUMPTIONS = (
    ("A1", "a process is at most this busy (headroom for rebalances, retries, catch-up)",
     f"{HEADROOM:.0%}"),
    ("A2", "processes of each kind, at least (availability)", f"{MIN_PROCESSES}"),
    ("A3", "projectors add up by CPU: each costs one projector's CPU per event times I4's "
     "ratio for two, each on its own core; **measured for two only**, assumed beyond (a "
     "2-core bench machine cannot show it in wall-clock rates)", "by CPU (I4)"),
    ("A4", "partitions per projector, at least (never fewer than today's topic has)",
     f"{PARTITIONS_PER_PROJECTOR} (today: {TODAY_PARTITIONS})"),
    ("A5", "Kafka replication factor", f"{REPLICATION}"),
    ("A6", "shards of the projection once it is sharded by partition", f"{SHARDS}"),
    ("A7", "one core per API or projector process, as on the bench (the per-CPU-second "
     "figures scale per core)", "1 core"),
)  # fmt: skip


class MissingFigure(Exception):
    """A run lacks a figure the plan needs (a partial or older run)."""


@dataclass(frozen=True, slots=True)
class Source:
    command: str
    started: str
    commit: str
    machine: Machine

    @classmethod
    def of(cls, command: str, document: dict[str, Any]) -> Source:
        return cls(
            command,
            str(document.get("started", "?")),
            str(document.get("commit") or "not recorded"),
            Machine.of(document.get("machine") or {}),
        )

    def describe(self) -> str:
        return (
            f"`{self.command}`, run {self.started}, commit {self.commit}, on "
            f"{self.machine.describe()}."
        )


@dataclass(frozen=True, slots=True)
class Inputs:
    bench: Source
    capacity: Source
    single_rate: float  # I1: requests/s, and the command API's CPU µs per request
    single_cpu_us: float
    batch_rate: float  # I2: transactions/s, and CPU µs per transaction
    batch_cpu_us: float
    fold_rate: float  # I3: events/s, projector CPU µs per event, PostgreSQL % of a core
    fold_cpu_us: float
    fold_postgres_pct: float
    two_ratio: float  # I4: two projectors' rate over one's, and the machine's busy %
    two_busy_pct: float
    two_cpu_ratio: float  # I4: two projectors' projector + PostgreSQL CPU per event over one's
    read_rate: float  # I5: GET /stats/s at the big projection, query API % of a core
    read_cpu_pct: float
    dedupe_cpu_us: float  # I6: PostgreSQL CPU µs per inserted id
    dedupe_batch: int
    dedupe_mib_per_million: float  # I7
    bucket_cpu_us: float  # I8
    bucket_batch: int
    log_bytes_per_event: float  # I9

    @classmethod
    def of(cls, bench: dict[str, Any], capacity: dict[str, Any]) -> Inputs:
        rows = {row.get("key"): row.get("figures") or {} for row in bench.get("table", [])}

        def figure(key: str, name: str) -> float:
            try:
                return float(rows[key][name])
            except (KeyError, TypeError, ValueError):
                msg = f"the bench run has no figure {name!r} of {key!r}: rerun `make bench`"
                raise MissingFigure(msg) from None

        def measured(section: str, name: str) -> float:
            try:
                return float(capacity[section][name])
            except (KeyError, TypeError, ValueError):
                msg = f"the capacity run has no {section}.{name}: rerun bench.capacity"
                raise MissingFigure(msg) from None

        return cls(
            bench=Source.of("make bench", bench),
            capacity=Source.of(".venv/bin/python -m bench.capacity", capacity),
            single_rate=figure("ingest_single", "rate"),
            single_cpu_us=figure("ingest_single", "cpu_us"),
            batch_rate=figure("ingest_batch", "rate"),
            batch_cpu_us=figure("ingest_batch", "cpu_us"),
            fold_rate=figure("fold", "rate"),
            fold_cpu_us=figure("fold", "cpu_us"),
            fold_postgres_pct=figure("fold", "postgres_pct"),
            two_ratio=figure("fold_two", "ratio"),
            two_busy_pct=figure("fold_two", "busy_pct"),
            two_cpu_ratio=figure("fold_two_cpu", "cpu_ratio"),
            read_rate=figure("stats_throughput", "rate"),
            read_cpu_pct=figure("stats_throughput", "cpu_pct"),
            dedupe_cpu_us=measured("dedupe_insert", "cpu_us_per_row"),
            dedupe_batch=int(measured("dedupe_insert", "batch")),
            dedupe_mib_per_million=measured("dedupe_insert", "mib_per_million_ids"),
            bucket_cpu_us=measured("bucket_upsert", "cpu_us_per_row"),
            bucket_batch=int(measured("bucket_upsert", "batch")),
            log_bytes_per_event=measured("kafka_log", "bytes_per_event"),
        )

    @property
    def fold_postgres_us(self) -> float:
        """PostgreSQL CPU µs per folded event, everything the fold asks of it."""
        return self.fold_postgres_pct / 100 / self.fold_rate * 1e6

    @property
    def read_cpu_us(self) -> float:
        return self.read_cpu_pct / 100 / self.read_rate * 1e6


def processes(rate: float, cpu_us: float) -> int:
    """Processes of one core each, at most HEADROOM busy, at least MIN_PROCESSES."""
    return max(MIN_PROCESSES, math.ceil(rate * cpu_us / 1e6 / HEADROOM))


def partitions(projectors: int) -> int:
    return max(TODAY_PARTITIONS, PARTITIONS_PER_PROJECTOR * projectors)


def _cores(value: float) -> str:
    return f"{value:,.2f}" if value < 1 else f"{value:,.1f}"


def cores(rate: float, cpu_us: float) -> float:
    """Cores kept busy (no headroom: what the machine must give)."""
    return rate * cpu_us / 1e6


def per_day(rate: float, bytes_per_item: float) -> float:
    return rate * SECONDS_PER_DAY * bytes_per_item


def _bytes(size: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:,.0f} bytes"


def _per_cpu_second(cpu_us: float) -> str:
    return f"{1e6 / cpu_us:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def inputs_table(inputs: Inputs) -> str:
    i = inputs
    cores_there = i.bench.machine.cores or 1
    busy = i.two_busy_pct / (100 * cores_there)
    saturated = (
        f"; the machine was {busy:.0%} busy, so this run cannot tell a scaling limit of the "
        "projectors from the machine's own"
        if busy >= SATURATED
        else ""
    )
    bench, capacity = "`make bench`", "`python -m bench.capacity`"
    rows = [
        ["I1", "single-POST ingest, one command-API process",
         f"{i.single_rate:,.0f} req/s; {i.single_cpu_us:,.0f} µs of CPU per request",
         f"{_per_cpu_second(i.single_cpu_us)} requests", bench],
        ["I2", "batch ingest (1,000-item batches), one command-API process",
         f"{i.batch_rate:,.0f} tx/s; {i.batch_cpu_us:,.1f} µs of CPU per transaction",
         f"{_per_cpu_second(i.batch_cpu_us)} transactions", bench],
        ["I3", "fold, one projector process",
         f"{i.fold_rate:,.0f} events/s; {i.fold_cpu_us:,.1f} µs of projector CPU per event; "
         f"PostgreSQL {i.fold_postgres_pct:.0f}% of a core meanwhile = "
         f"{i.fold_postgres_us:,.1f} µs per event",
         f"{_per_cpu_second(i.fold_cpu_us)} events (projector)", bench],
        ["I4", "fold, two projectors in one group, one core each",
         f"projector + PostgreSQL CPU per event {i.two_cpu_ratio:.2f}x one's; "
         f"{i.two_ratio:.2f}x the rate of one, every process of the run together "
         f"{i.two_busy_pct:.0f}% of a core, on {cores_there} cores{saturated}",
         "—", bench],
        ["I5", "`GET /stats` over the big projection, one query-API process",
         f"{i.read_rate:,.0f} req/s at {i.read_cpu_pct:.0f}% of a core",
         f"{_per_cpu_second(i.read_cpu_us)} reads", bench],
        ["I6", f"dedupe insert into `seen_transactions` (the projector's statement, batches "
         f"of {i.dedupe_batch:,} UUID ids)",
         f"{i.dedupe_cpu_us:,.1f} µs of PostgreSQL CPU per row",
         f"{_per_cpu_second(i.dedupe_cpu_us)} rows", capacity],
        ["I7", "`seen_transactions` size (table + primary key, with each id's first occurrence)",
         f"{i.dedupe_mib_per_million:,.0f} MiB per million ids", "—", capacity],
        ["I8", f"1-second bucket upsert (the projector's statement, {i.bucket_batch:,} buckets "
         "a statement)", f"{i.bucket_cpu_us:,.1f} µs of PostgreSQL CPU per row",
         f"{_per_cpu_second(i.bucket_cpu_us)} rows", capacity],
        ["I9", "Kafka log per event, one replica (uncompressed)",
         f"{i.log_bytes_per_event:,.0f} bytes", "—", capacity],
    ]  # fmt: skip
    return _table(["#", "input", "measured", "per CPU-second", "command"], rows)


def sizing_table(inputs: Inputs) -> str:
    i = inputs

    def each(cell: Any) -> list[str]:
        return [cell(rate) for rate in RATES]

    def projectors(rate: float) -> int:
        return processes(rate, i.fold_cpu_us * max(1.0, i.two_cpu_ratio))

    rows = [
        ["command-API processes, single POSTs (I1, A1, A2, A7)",
         *each(lambda r: f"{processes(r, i.single_cpu_us):,}")],
        ["command-API processes, 1,000-item batches (I2, A1, A2, A7)",
         *each(lambda r: f"{processes(r, i.batch_cpu_us):,}")],
        ["projectors (I3, I4, A1, A2, A3, A7)",
         *each(lambda r: f"{projectors(r):,}")],
        ["partitions (A4)", *each(lambda r: f"{partitions(projectors(r)):,}")],
        ["PostgreSQL cores for the fold (I3), on one primary",
         *each(lambda r: _cores(cores(r, i.fold_postgres_us)))],
        ["of which the dedupe insert (I6)",
         *each(lambda r: _cores(cores(r, i.dedupe_cpu_us)))],
        [f"PostgreSQL cores for the fold per shard, {SHARDS} shards (I3, A6)",
         *each(lambda r: _cores(cores(r, i.fold_postgres_us) / SHARDS))],
        ["`seen_transactions` growth per day (I7)",
         *each(lambda r: _bytes(per_day(r, i.dedupe_mib_per_million * 2**20 / 1e6)))],
        [f"Kafka log growth per day, {REPLICATION} replicas (I9, A5)",
         *each(lambda r: _bytes(per_day(r, i.log_bytes_per_event * REPLICATION)))],
        [f"Kafka writes, {REPLICATION} replicas (I9, A5)",
         *each(lambda r: f"{r * i.log_bytes_per_event * REPLICATION / 1e6:,.0f} MB/s")],
    ]  # fmt: skip
    header = ["", *(f"{rate:,} tx/s" for rate in RATES)]
    return _table(header, rows)


def page(inputs: Inputs) -> str:
    return (
        "# Capacity figures\n\n"
        "Generated by `make figures` (`bench/sizing.py`) from the runs below; do not edit: "
        "rerun them. What the figures mean, and what they leave out: "
        "[the capacity plan](../capacity.md).\n\n"
        f"- I1-I5: {inputs.bench.describe()}\n"
        f"- I6-I9: {inputs.capacity.describe()}\n\n"
        "## Measured inputs\n\n"
        "Per CPU-second: what one fully busy core does (1,000,000 µs / the CPU per item); "
        "the plan scales from these, not from the wall-clock rates of a shared machine.\n\n"
        + inputs_table(inputs)
        + "\n## Assumed, not measured\n\n"
        + _table(["#", "assumption", "value"], [list(a) for a in ASSUMPTIONS])
        + "\n## Sizing\n\n"
        + sizing_table(inputs)
        + "\nArithmetic: processes = rate * CPU per item / A1, rounded up, at least A2; "
        "PostgreSQL cores = rate * CPU per event (cores kept busy, before any headroom); "
        f"growth = rate * {SECONDS_PER_DAY:,} s * size. Query-API processes follow the read "
        "load, not the write rate: reads per second / I5's per CPU-second / A1, at least A2 "
        "(a read costs the same at any volume).\n"
    )
