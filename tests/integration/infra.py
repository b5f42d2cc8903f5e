"""Where the integration tests find a real Kafka and a real PostgreSQL.

In order: the services named by `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when they answer;
otherwise testcontainers when a Docker engine answers; otherwise our own local stack
(`scripts/stack.sh`), started on demand.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_DATABASE = "postgresql://txstats@127.0.0.1:5433/txstats"


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


def _stack(command: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), command], check=True)


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    address = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA).split(",")[0]
    if answers(*_host_port(address)):
        yield address
    elif docker_engine_answers():
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        _stack("kafka-up")
        yield address


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE)
    if answers(*_host_port(url)):
        yield url
    elif docker_engine_answers():
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
    else:
        _stack("pg-up")
        yield url
