"""The benchmark scenarios, each measured against its baseline in the same run."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import BenchInfra
from bench.procs import Watched, infra_watch
from bench.report import Report

logger = logging.getLogger("bench")

# a full run, in order
SCENARIOS = ("ingest", "import", "fold", "stats", "window", "freshness", "stream")

_PINNED = (os.cpu_count() or 1) >= 2
# The load generator (wrk, or the paced client in this process), and the server under test
# (and its baseline); on a single core nothing is pinned.
CLIENT_CPUS: str | None = "0" if _PINNED else None
SERVER_CPUS: str | None = "1" if _PINNED else None
# Two processes of one service, one per core (unpinned on a single core).
BOTH_CPUS: tuple[str | None, str | None] = ("0", "1") if _PINNED else (None, None)
LAYOUT = (
    f"load generator pinned to CPU {CLIENT_CPUS}, the server under test (and its baseline) "
    f"to CPU {SERVER_CPUS}; the shared Kafka broker and PostgreSQL float over both"
    if _PINNED
    else "one CPU: nothing pinned"
)


@dataclass(slots=True)
class Context:
    infra: BenchInfra
    report: Report
    log_dir: Path
    runs: int = 3
    seconds: float = 10.0
    warmup_seconds: float = 2.0
    connections: int = 64
    batch_connections: int = 8
    events: int = 1_000_000
    naive_events: int = 20_000
    fresh_seconds: float = 15.0
    fresh_rate: int = 1000
    watch_infra: list[Watched] = field(default_factory=infra_watch)
    started: float = field(default_factory=time.monotonic)

    def progress(self, message: str) -> None:
        logger.info("[%5.0fs] %s", time.monotonic() - self.started, message)
