"""What a new user meets: the README's "Try it" block, run from the README's own text against
the three services as `scripts/services.sh` starts them, and the logs of a clean start."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from shared.auth import SCOPE_WRITE, mint_token
from shared.settings import JwtSettings
from tests.scratch_database import ROLES, as_role, create_database, drop_database
from tests.unit.command_kit import SECRET

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SERVICES = ROOT / "scripts" / "services.sh"
STACK = ROOT / "scripts" / "stack.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Stack:
    env: dict[str, str]
    logs: Path
    command_port: int
    query_port: int


@pytest.fixture(scope="module")
def fresh_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new single-node broker, as on a first run: its first consumer group creates
    `__consumer_offsets`, which is when the coordinator's start-up noise comes."""
    env = {
        **os.environ,
        "STACK_DIR": str(tmp_path_factory.mktemp("stack")),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_HEAP": "256m",
    }
    try:
        subprocess.run([STACK, "kafka-up"], env=env, cwd=ROOT, check=True, timeout=240)
        yield f"127.0.0.1:{env['KAFKA_PORT']}"
    finally:
        subprocess.run([STACK, "kafka-down"], env=env, cwd=ROOT, check=False, timeout=120)


@pytest.fixture(scope="module")
def stack(
    fresh_kafka: str, admin_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The three services on free ports, with a new broker, database and consumer group; pid
    files and logs in a private directory (a `make up` of the user's is never disturbed)."""
    home = tmp_path_factory.mktemp("services")
    database_url = asyncio.run(create_database(admin_database_url, "txstats_test"))
    command_port, query_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=fresh_kafka,
        KAFKA_TOPIC=f"test.{uuid.uuid4().hex[:12]}",
        DATABASE_URL=database_url,
        # The services' roles on it, with their passwords where the server wants one.
        PROJECTOR_DATABASE_URL=as_role(database_url, ROLES.projector),
        QUERY_DATABASE_URL=as_role(database_url, ROLES.query),
        PROJECTOR_GROUP_ID=uuid.uuid4().hex,
        JWT_SECRET=SECRET,
        COMMAND_API_PORT=str(command_port),
        QUERY_API_PORT=str(query_port),
        PROJECTOR_HTTP_PORT=str(free_port()),
        SERVICES_DIR=str(home),
    )
    try:
        subprocess.run([SERVICES, "up"], env=env, cwd=ROOT, check=True, timeout=180)
        yield Stack(env, home / "logs", command_port, query_port)
    finally:
        subprocess.run([SERVICES, "down"], env=env, cwd=ROOT, check=False, timeout=120)
        asyncio.run(drop_database(admin_database_url, database_url))


def try_it_block() -> list[str]:
    """The lines of the first `sh` block after "Try it" in the README."""
    text = README.read_text()
    match = re.search(r"^Try it.*?\n```sh\n(.*?)\n```", text, re.S | re.M)
    assert match, "README.md has no ```sh block after 'Try it'"
    return match.group(1).splitlines()


def test_the_readme_try_it_block_works_as_pasted(stack: Stack) -> None:
    lines = try_it_block()
    # The first and last lines start and stop the stack: the fixture does that here (on
    # private ports, and without stopping the Kafka and PostgreSQL other tests use).
    assert lines[0].startswith("make up"), lines
    assert lines[-1].startswith("make down"), lines
    script = "\n".join(lines[1:-1])
    script = script.replace("localhost:8000", f"localhost:{stack.command_port}")
    script = script.replace("localhost:8001", f"localhost:{stack.query_port}")
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    outputs = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    posted, read_own, windowed = outputs
    assert posted["transaction_id"] == "order-1"
    assert posted["consistency_token"].startswith("v1.")
    expected = {"count": 1, "sum": "12.34", "avg": "12.34", "max": "12.34", "min": "12.34"}
    assert {k: read_own[k] for k in expected} == expected  # no 503: the token was the real one
    assert {k: windowed[k] for k in expected} == expected
    assert windowed["as_of"]["window"]["seconds"] == 60

    # The answers the README shows under each command are what the code returns.
    shown = [json.loads(m) for m in re.findall(r"^# -> (\{.*\})$", "\n".join(lines), re.M)]
    assert len(shown) == 3, "each command's answer is shown as '# -> {...}'"
    for real, example in zip(outputs, shown, strict=True):
        assert same_shape(real, example), (real, example)
    assert shown[0]["position"] == posted["position"]  # order-1's partition, as the code picks it
    assert shown[0]["consistency_token"] == posted["consistency_token"]


def same_shape(real: object, example: object) -> bool:
    """Same keys at every level, same JSON types (an example's values are illustrative)."""
    if isinstance(real, dict) and isinstance(example, dict):
        return real.keys() == example.keys() and all(same_shape(real[k], example[k]) for k in real)
    if real is None or example is None:
        return real is None and example is None
    return type(real) is type(example)


def test_a_clean_start_logs_one_format_and_no_error(stack: Stack) -> None:
    # Fold something first, so that the consumer has joined its group (the coordinator's
    # start-up noise comes then) and every service has logged its start-up.
    settings = JwtSettings(secret=SecretStr(SECRET))
    token = mint_token(settings, subject="t", scopes=[SCOPE_WRITE], ttl_seconds=60)
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    posted = httpx.post(
        f"http://127.0.0.1:{stack.command_port}/transactions",
        json={"amount": "1.00", "timestamp": stamp},
        headers={"authorization": f"Bearer {token}"},
    )
    assert posted.status_code == 201, posted.text
    read = httpx.get(
        f"http://127.0.0.1:{stack.query_port}/stats",
        params={"consistency_token": posted.json()["consistency_token"], "wait_ms": 10_000},
        timeout=15,
    )
    assert read.status_code == 200, read.text

    logs = sorted(stack.logs.glob("*.log"))
    assert [p.name for p in logs] == ["command_api.log", "projector.log", "query_api.log"]
    for path in logs:
        entries = []
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                pytest.fail(f"{path.name}: not a JSON line: {line!r}")
        for entry in entries:
            assert {"ts", "level", "logger", "message"} <= entry.keys(), entry
            assert "color_message" not in entry, entry
            assert entry["level"] not in ("ERROR", "CRITICAL"), f"{path.name}: {entry}"
        # uvicorn's own start-up lines come through our formatter too
        assert any(e["logger"].startswith("uvicorn") for e in entries), path.name
