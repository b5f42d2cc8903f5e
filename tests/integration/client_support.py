"""The client's integration tests: the three services as real processes (tests/faults/harness.py
starts them the same way) on this test's topic and database, and the `txstats` CLI run as a
user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from shared.auth import SCOPE_READ, SCOPE_TRANSACTIONS_READ, SCOPE_WRITE, mint_token
from tests.faults.harness import JWT, ROOT, Deployment


def client_token(subject: str = "importer") -> str:
    scopes = [SCOPE_WRITE, SCOPE_READ, SCOPE_TRANSACTIONS_READ]
    return mint_token(JWT, subject=subject, scopes=scopes, ttl_seconds=3600)


@dataclass
class Stack:
    command_url: str
    query_url: str
    token: str

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TXSTATS_COMMAND_URL": self.command_url,
            "TXSTATS_QUERY_URL": self.query_url,
            "TXSTATS_TOKEN": self.token,
        }

    def cli(self, *args: str, timeout: float = 300) -> tuple[int, Any]:
        """`python -m client ARGS --json`: its exit status and its JSON document."""
        done = subprocess.run(
            [sys.executable, "-m", "client", *args, "--json"],
            env=self.env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        lines = done.stdout.decode().splitlines()
        return done.returncode, msgspec.json.decode(lines[-1]) if lines else done.stderr.decode()

    def start_cli(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "client", *args, "--json"],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


async def start_stack(deployment: Deployment) -> Stack:
    command = deployment.command_api()
    query = deployment.query_api()
    deployment.projector()
    await command.wait_ready()
    await query.wait_ready()
    return Stack(command.url, query.url, client_token())


def write_csv(path: Path, count: int, *, bad: dict[int, str] | None = None) -> int:
    """`count` data lines after a header (line 1); line numbers in `bad` hold the text given.
    The expected sum of the good lines, in cents."""
    stamp = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cents = 0
    with path.open("w") as out:
        out.write("amount,timestamp\n")
        for line in range(2, count + 2):
            if bad and line in bad:
                out.write(bad[line] + "\n")
                continue
            amount = 100 + line % 997
            cents += amount
            out.write(f"{amount // 100}.{amount % 100:02d},{stamp}\n")
    return cents
