"""The fault suite's machinery: a private Kafka + PostgreSQL (never the shared stack), the
three services as real processes, and HTTP helpers.

The private stack is `scripts/stack.sh` with its own STACK_DIR and ports, so stopping its
broker or its database hurts no other test. Services run from a temporary working directory
(no `.env` is read) with every setting they need in their environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

from shared.auth import SCOPE_READ, SCOPE_WRITE, mint_token
from shared.settings import JwtSettings, KafkaSettings
from shared.topic import ensure_topic
from tests.scratch_database import ROLES, as_role

ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = Path(os.environ.get("FAULTS_STACK_DIR", ROOT / ".local" / "faults"))
KAFKA_PORT = int(os.environ.get("FAULTS_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("FAULTS_KAFKA_CONTROLLER_PORT", "19093"))
PG_PORT = int(os.environ.get("FAULTS_PG_PORT", "15433"))

JWT_SECRET = "faults-suite-jwt-secret-0123456789-abcdefghijkl"  # 48 characters, tests only
JWT = JwtSettings(
    secret=SecretStr(JWT_SECRET), public_key=None, audience=None, issuer=None, leeway_seconds=0
)
PUBLISH_TIMEOUT_SECONDS = 2.0
PROBLEM_JSON = "application/problem+json"


def writer_token() -> str:
    return mint_token(JWT, subject="fault-producer", scopes=[SCOPE_WRITE, SCOPE_READ])


# ------------------------------------------------------------------------- private stack


@dataclass(frozen=True)
class PrivateStack:
    kafka: str
    admin_database_url: str


def stack(command: str) -> None:
    """`scripts/stack.sh <command>` against the private stack only."""
    env = {
        **os.environ,
        "STACK_DIR": str(STACK_DIR),
        "KAFKA_PORT": str(KAFKA_PORT),
        "KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT),
        "PG_PORT": str(PG_PORT),
    }
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), command], env=env, check=True)


@contextlib.contextmanager
def private_stack() -> Iterator[PrivateStack]:
    stack("infra-up")
    try:
        yield PrivateStack(
            kafka=f"127.0.0.1:{KAFKA_PORT}",
            admin_database_url=f"postgresql://txstats@127.0.0.1:{PG_PORT}/txstats",
        )
    finally:
        stack("infra-down")


# ------------------------------------------------------------- private 3-node cluster

CLUSTER_STACK_DIR = Path(
    os.environ.get("FAULTS_CLUSTER_STACK_DIR", ROOT / ".local" / "faults-cluster")
)
CLUSTER_KAFKA_PORT = int(os.environ.get("FAULTS_CLUSTER_KAFKA_PORT", "19102"))
CLUSTER_CONTROLLER_PORT = int(os.environ.get("FAULTS_CLUSTER_KAFKA_CONTROLLER_PORT", "19103"))
CLUSTER_NODES = 3
CLUSTER_PORT_STEP = 10  # node i listens on CLUSTER_KAFKA_PORT + 10 * (i - 1)


@dataclass(frozen=True)
class PrivateCluster:
    """Three KRaft nodes (broker + controller each), started by `scripts/stack.sh`."""

    ports: dict[int, int]  # node id -> broker port

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports.values())

    def pid(self, node: int) -> int:
        pidfile = CLUSTER_STACK_DIR / "kafka-cluster" / f"node{node}" / "kafka.pid"
        return int(pidfile.read_text().strip())

    def kill(self, node: int) -> float:
        """kill -9 one node; returns the time.monotonic() of the signal."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _wait_gone(pid)
        return killed


def cluster_stack(command: str) -> None:
    """`scripts/stack.sh <command>` against the private 3-node cluster only."""
    env = {
        **os.environ,
        "STACK_DIR": str(CLUSTER_STACK_DIR),
        "KAFKA_NODES": str(CLUSTER_NODES),
        "KAFKA_PORT": str(CLUSTER_KAFKA_PORT),
        "KAFKA_CONTROLLER_PORT": str(CLUSTER_CONTROLLER_PORT),
        "KAFKA_PORT_STEP": str(CLUSTER_PORT_STEP),
        "KAFKA_HEAP": os.environ.get("FAULTS_CLUSTER_KAFKA_HEAP", "384m"),
    }
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), command], env=env, check=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    try:
        cluster_stack("kafka-up")  # inside: nodes that did start are stopped on a failure
        yield PrivateCluster(
            {
                node: CLUSTER_KAFKA_PORT + CLUSTER_PORT_STEP * (node - 1)
                for node in range(1, CLUSTER_NODES + 1)
            }
        )
    finally:
        cluster_stack("kafka-down")


# ------------------------------------------------------------- private SASL broker

SASL_STACK_DIR = Path(os.environ.get("FAULTS_SASL_STACK_DIR", ROOT / ".local" / "faults-sasl"))
# The broker's plaintext listener, its controller, then its SASL_PLAINTEXT listener.
SASL_KAFKA_PORT = int(os.environ.get("FAULTS_SASL_KAFKA_PORT", "19132"))
SASL_USERS = {"txstats-command": "command-sasl-password", "txstats-projector": "projector-pw-x"}


@contextlib.contextmanager
def private_sasl_broker() -> Iterator[str]:
    """A single broker whose second listener speaks SASL_PLAINTEXT (PLAIN) for `SASL_USERS`;
    yields that listener's address. Stopped at the end."""
    env = {
        **os.environ,
        "STACK_DIR": str(SASL_STACK_DIR),
        "KAFKA_PORT": str(SASL_KAFKA_PORT),
        "KAFKA_CONTROLLER_PORT": str(SASL_KAFKA_PORT + 1),
        "KAFKA_SASL_PORT": str(SASL_KAFKA_PORT + 2),
        "KAFKA_SASL_USERS": ",".join(f"{name}={password}" for name, password in SASL_USERS.items()),
        "KAFKA_HEAP": "384m",
    }
    command = [str(ROOT / "scripts" / "stack.sh")]
    try:
        subprocess.run([*command, "kafka-up"], env=env, check=True)
        yield f"127.0.0.1:{SASL_KAFKA_PORT + 2}"
    finally:
        subprocess.run([*command, "kafka-down"], env=env, check=True)


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
        if time.monotonic() > deadline:
            msg = f"process {pid} still alive {timeout} s after SIGKILL"
            raise AssertionError(msg)
        time.sleep(0.01)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def kill_postgres() -> float:
    """SIGKILL the private PostgreSQL: the postmaster and every backend, as a crash would.
    Returns the time.monotonic() of the kill."""
    postmaster = int((STACK_DIR / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    backends = _children(postmaster)
    os.kill(postmaster, signal.SIGKILL)
    killed = time.monotonic()
    for pid in backends:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in [postmaster, *backends]:
        _wait_gone(pid)
    return killed


async def stack_async(command: str) -> None:
    """The same, off the event loop (producers and readers keep running meanwhile)."""
    await asyncio.to_thread(stack, command)


async def create_topic(private: PrivateStack, partitions: int = 6) -> KafkaSettings:
    """A new topic on the private broker."""
    settings = KafkaSettings(
        bootstrap_servers=private.kafka,
        topic=f"faults.{uuid.uuid4().hex[:12]}",
        partitions=partitions,
    )
    await ensure_topic(settings)
    return settings


# ------------------------------------------------------------------------------ services


def free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Service:
    """One of our processes, started with `args` and `env`, logging to `log_path`."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    workdir: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        if self.alive():
            self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, *, timeout: float = 60, path: str = "/ready") -> None:
        """Until `path` answers 200 (fails early if the process died)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while True:
                if not self.alive():
                    msg = f"{self.name} exited:\n{self.log()[-3000:]}"
                    raise AssertionError(msg)
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(path)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    msg = f"{self.name} not ready within {timeout} s:\n{self.log()[-3000:]}"
                    raise AssertionError(msg)
                await asyncio.sleep(0.1)


@dataclass
class Deployment:
    """Where the services of one test run: its topic, its database, its temp folder."""

    kafka: KafkaSettings
    database_url: str
    tmp_path: Path
    services: list[Service] = field(default_factory=list)

    def _env(self, **extra: str) -> dict[str, str]:
        keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH", "SYSTEMROOT"}
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "PYTHONPATH": str(ROOT),  # the checkout, whether or not it is pip-installed
                "PYTHONUNBUFFERED": "1",
                "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
                "KAFKA_TOPIC": self.kafka.topic,
                "KAFKA_PARTITIONS": str(self.kafka.partitions),
                "DATABASE_POOL_MAX": "10",
                "JWT_SECRET": JWT_SECRET,
                "PUBLISH_TIMEOUT_SECONDS": str(PUBLISH_TIMEOUT_SECONDS),
                "LOG_LEVEL": "INFO",
                **extra,
            }
        )
        return env

    def _service(self, name: str, args: list[str], port: int | None, **env: str) -> Service:
        workdir = self.tmp_path / "cwd"
        workdir.mkdir(exist_ok=True)
        service = Service(
            name=name,
            args=args,
            env=self._env(**env),
            log_path=self.tmp_path / f"{name}.log",
            workdir=workdir,
            port=port,
        )
        self.services.append(service)
        return service

    def command_api(
        self, *, port: int | None = None, access_log: bool = False, **env: str
    ) -> Service:
        port = port or free_port()
        args = ["-m", "uvicorn", "--factory", "command_api.main:create_app"]
        args += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
        args += ["--http", "httptools"] + ([] if access_log else ["--no-access-log"])
        return self._service("command_api", args, port, **env).start()  # no database at all

    def query_api(self, *, access_log: bool = False, **env: str) -> Service:
        port = free_port()
        args = ["-m", "uvicorn", "--factory", "query_api.main:create_app", "--no-proxy-headers"]
        args += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
        args += ["--http", "httptools"] + ([] if access_log else ["--no-access-log"])
        role = {"DATABASE_URL": as_role(self.database_url, ROLES.query)}
        return self._service("query_api", args, port, **{**role, **env}).start()

    def projector(
        self,
        *,
        group_id: str | None = None,
        name: str = "projector",
        http: bool = False,
        **env: str,
    ) -> Service:
        """`name` names its log file (tmp_path/<name>.log): give each member its own.
        `http=True` serves its /health, /ready and /metrics on `Service.url`."""
        port = free_port() if http else None
        return self._service(
            name,
            ["-m", "projector", "run"],
            port,
            PROJECTOR_GROUP_ID=group_id or f"faults-{uuid.uuid4().hex[:8]}",
            PROJECTOR_HTTP_PORT=str(port or 0),
            **{"DATABASE_URL": as_role(self.database_url, ROLES.projector), **env},
        ).start()

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()


# ------------------------------------------------------------------------------- polling


# --------------------------------------------------------------------- the projection


@dataclass(frozen=True)
class Totals:
    count: int
    sum: Decimal
    max: Decimal | None
    min: Decimal | None
    consumed: int  # sum of the stored next offsets: records folded or skipped


ACTIVE_TOTALS = """
SELECT coalesce(sum(tx_count), 0)::bigint AS count, coalesce(sum(tx_sum), 0) AS sum,
       max(tx_max) AS max, min(tx_min) AS min, coalesce(sum(next_offset), 0)::bigint AS consumed
FROM partition_totals WHERE version = (SELECT version FROM projection_active)"""


async def projection(database_url: str) -> Totals:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        row = await conn.fetchrow(ACTIVE_TOTALS)
    finally:
        await conn.close()
    assert row is not None
    return Totals(row["count"], row["sum"], row["max"], row["min"], row["consumed"])


def totals_of(amounts: dict[str, Decimal]) -> tuple[int, Decimal, Decimal | None, Decimal | None]:
    """What the projection must hold for these transactions (one amount per id)."""
    values = list(amounts.values())
    return (
        len(values),
        sum(values, Decimal(0)),
        max(values) if values else None,
        min(values) if values else None,
    )


def transaction_body(transaction_id: str, amount: Decimal, timestamp: str) -> bytes:
    return (
        f'{{"amount": "{amount}", "timestamp": "{timestamp}", '
        f'"transaction_id": "{transaction_id}"}}'
    ).encode()


def is_problem(response: httpx.Response, status: int, slug: str | None = None) -> bool:
    if response.status_code != status:
        return False
    if response.headers.get("content-type") != PROBLEM_JSON:
        return False
    body: dict[str, Any] = response.json()
    return body.get("status") == status and (slug is None or body["type"].endswith("/" + slug))
