"""Processes under test: started pinned to a core, watched for CPU time, stopped at the end.

CPU time comes from `/proc/<pid>/stat` (utime + stime, and for PostgreSQL the whole process
tree under the postmaster, counting reaped backends through cutime + cstime), so a figure is
seconds of one core spent by that process between two readings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UVICORN = ("-m", "uvicorn", "--factory", "--loop", "uvloop", "--http", "httptools")
UVICORN_FLAGS = ("--no-access-log", "--log-level", "warning", "--host", "127.0.0.1")
RESERVED_PORTS = frozenset({8000, 8001, 8002})  # `make up` uses these


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or broke; the message says what."""


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


def pinned(command: Sequence[str], cpus: str | None) -> list[str]:
    """`command` under `taskset -c cpus` (unpinned when `cpus` is None)."""
    return [*(("taskset", "-c", cpus) if cpus is not None else ()), *command]


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU seconds used by `pid` so far (0 once it is gone); with `children`, also its
    reaped children's."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def child_pids(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in task.read_text().split())
    return found


def tree_cpu_seconds(pid: int) -> float:
    """A process, its live children and its reaped children (PostgreSQL's backends)."""
    return cpu_seconds(pid, children=True) + sum(cpu_seconds(c) for c in child_pids(pid))


@dataclass(frozen=True, slots=True)
class Watched:
    """Named processes whose CPU use a measurement reports (`tree`: count the children)."""

    name: str
    pid: int
    tree: bool = False

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid) if self.tree else cpu_seconds(self.pid)


@dataclass(slots=True)
class CpuMeter:
    """CPU seconds per watched process between `start()` and `stop()`, as a share of one core
    over the wall time in between."""

    watched: Sequence[Watched]
    _started: dict[str, float] = field(default_factory=dict)
    _wall: float = 0.0
    used: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def start(self) -> None:
        self._started = {w.name: w.cpu() for w in self.watched}
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        self.wall = time.perf_counter() - self._wall
        self.used = {w.name: w.cpu() - self._started[w.name] for w in self.watched}
        return self.shares()

    def shares(self) -> dict[str, float]:
        """Per process: percent of one core."""
        wall = max(self.wall, 1e-9)
        return {name: round(100 * used / wall, 1) for name, used in self.used.items()}


def infra_watch() -> list[Watched]:
    """The shared stack's Kafka broker and PostgreSQL cluster, when they are the local ones."""
    found: list[Watched] = []
    kafka_pid = ROOT / ".local" / "kafka" / "kafka.pid"
    pg_pid = ROOT / ".local" / "pg" / "data" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError):
        found.append(Watched("kafka", int(kafka_pid.read_text().split()[0])))
    with contextlib.suppress(OSError, ValueError):
        found.append(Watched("postgres", int(pg_pid.read_text().split()[0]), tree=True))
    return found


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


class Service:
    """One of our processes (or a baseline app), pinned, logging to `.local/bench/logs`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cpus: str | None,
        log_dir: Path,
        port: int | None = None,
        ready_path: str = "/health",
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.port = port
        self._command = pinned(command, cpus)
        self._env = dict(env)
        self._ready_path = ready_path
        self.log_path = log_dir / f"{name}.log"
        self.cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def uvicorn(
        cls,
        name: str,
        factory: str,
        *,
        env: Mapping[str, str],
        cpus: str | None,
        log_dir: Path,
        ready_path: str = "/health",
        cwd: Path = ROOT,
    ) -> Service:
        """`uvicorn --factory` with the settings `scripts/services.sh` uses (uvloop,
        httptools, one worker, no access log) on a free port. `cwd`: the checkout whose code
        it runs (its packages come first on the import path)."""
        port = free_port()
        command = [sys.executable, *UVICORN, *UVICORN_FLAGS, "--port", str(port), factory]
        return cls(
            name,
            command,
            env=env,
            cpus=cpus,
            log_dir=log_dir,
            port=port,
            ready_path=ready_path,
            cwd=cwd,
        )

    @classmethod
    def api(
        cls,
        package: str,
        *,
        env: Mapping[str, str],
        cpus: str | None,
        log_dir: Path,
        name: str | None = None,
        cwd: Path = ROOT,
    ) -> Service:
        """One of our APIs (`command_api`, `query_api`) as `scripts/services.sh` runs it,
        ready when its dependencies answer; from the checkout `cwd` (another commit's, to
        compare with)."""
        return cls.uvicorn(
            name or package,
            f"{package}.main:create_app",
            env=env,
            cpus=cpus,
            log_dir=log_dir,
            ready_path="/ready",
            cwd=cwd,
        )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} is not running")
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def watched(self) -> Watched:
        return Watched(self.name, self.pid)

    def start(self, *, timeout: float = 60.0) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command, cwd=self.cwd, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        if self.port is not None:
            self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _http_status(self.url + self._ready_path) != 200:
            if self.process is None or self.process.poll() is not None:
                raise BenchError(f"{self.name} exited while starting; see {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running(*services: Service) -> Iterator[tuple[Service, ...]]:
    """Start every service (in order), stop them all on the way out, whatever happens."""
    started: list[Service] = []
    try:
        for service in services:
            started.append(service.start())
        yield services
    finally:
        for service in reversed(started):
            service.stop()
