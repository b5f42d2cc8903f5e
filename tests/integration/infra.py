"""Where the integration tests find a real Kafka and a real PostgreSQL.

`make test` decides once and says so in `TXSTATS_TEST_INFRA` (or keeps the value it is given):
`testcontainers` when a Docker engine answers (`python -m tests.integration.infra docker`
exits 0), else `local`, the stack of `scripts/stack.sh` it has just provisioned at
`KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL`.
Unset (pytest run by hand), in order: the services named by those variables when they
answer; otherwise testcontainers when a Docker engine answers; otherwise the local stack,
started on demand. `describe()` names the path; every test run prints it first.

The testcontainers path needs a Docker engine that can pull the two images below and
testcontainers' own reaper (Ryuk, which removes the containers when the session ends); the
GitHub workflow runs the integration suite that way (job `integration-testcontainers`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_DATABASE = "postgresql://txstats@127.0.0.1:5433/txstats"
MODE_VARIABLE = "TXSTATS_TEST_INFRA"
TESTCONTAINERS, LOCAL = "testcontainers", "local"
# testcontainers' KafkaContainer runs KRaft on Confluent's images only (not apache/kafka, which
# the compose file uses): this is the library's own default, pinned here.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
# The compose file's PostgreSQL (tests/unit/test_containers.py holds the two together).
POSTGRES_IMAGE = "postgres:16.11-bookworm"
# Seconds for the broker's "Kafka Server started" line after its container starts (the
# library's default, 30, is short on a loaded runner).
KAFKA_START_SECONDS = 120


def answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def docker_engine_answers() -> bool:
    try:
        import docker  # noqa: PLC0415 - optional, only where testcontainers may run

        docker.from_env(timeout=2).ping()
    except Exception:  # no engine, no client config: same answer
        return False
    return True


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "//" in address else f"//{address}")
    return parts.hostname or "127.0.0.1", parts.port or 0


def _kafka_address() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA).split(",")[0]


def _database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_DATABASE)


def _mode() -> str | None:
    chosen = os.environ.get(MODE_VARIABLE)
    if chosen not in {None, TESTCONTAINERS, LOCAL}:
        msg = f"{MODE_VARIABLE}={chosen!r}: expected {TESTCONTAINERS!r} or {LOCAL!r}"
        raise ValueError(msg)
    return chosen


def _use_containers(address: str) -> bool:
    mode = _mode()
    if mode is not None:
        return mode == TESTCONTAINERS
    return not answers(*_host_port(address)) and docker_engine_answers()


def describe() -> str:
    """Which path the integration tests take for Kafka and PostgreSQL, in one line."""
    kafka, database = _kafka_address(), _host_port(_database_url())
    local = f"Kafka {kafka}, PostgreSQL {database[0]}:{database[1]}"
    mode = _mode()
    if mode == TESTCONTAINERS:
        return "testcontainers (make test: a Docker engine answered)"
    if mode == LOCAL:
        return f"local stack, scripts/stack.sh (make test: no Docker engine): {local}"
    if answers(*_host_port(kafka)) and answers(*database):
        return f"the running services named by the environment: {local}"
    if docker_engine_answers():
        return "testcontainers (a Docker engine answered)"
    return f"local stack, scripts/stack.sh, started on demand: {local}"


def _stack(command: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), command], check=True)


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    address = _kafka_address()
    if _use_containers(address):
        from testcontainers.community.kafka import KafkaContainer  # noqa: PLC0415

        container = KafkaContainer(KAFKA_IMAGE).with_kraft()
        try:
            container.start(timeout=KAFKA_START_SECONDS)
            yield container.get_bootstrap_server()
        finally:
            container.stop()
    elif answers(*_host_port(address)):
        yield address
    else:
        _stack("kafka-up")
        yield address


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    url = _database_url()
    if _use_containers(url):
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield container.get_connection_url()
    elif answers(*_host_port(url)):
        yield url
    else:
        _stack("pg-up")
        yield url


if __name__ == "__main__":
    # `python -m tests.integration.infra docker`: exit 0 when a Docker engine answers.
    if sys.argv[1:] != ["docker"]:
        sys.exit("usage: python -m tests.integration.infra docker")
    sys.exit(0 if docker_engine_answers() else 1)
