"""`schemathesis run URL/openapi.json --checks all`, as a user runs it, against both APIs as
real processes over real sockets, with a token: zero failures. The rules JSON Schema cannot
state are in tests/integration/schemathesis_hooks.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.harness import ROOT, Deployment
from tests.integration.client_support import start_stack
from tests.integration.conftest import TopicFactory

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


@pytest.mark.parametrize("api", ["command", "query"])
async def test_schemathesis_finds_nothing(
    api: str, kafka_settings: TopicFactory, database_url: str, tmp_path: Path
) -> None:
    deployment = Deployment(await kafka_settings(), database_url, tmp_path)
    try:
        stack = await start_stack(deployment)
        url = stack.command_url if api == "command" else stack.query_url
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
        }
        command = [SCHEMATHESIS, "run", f"{url}/openapi.json", "--checks", "all"]
        command += ["-H", f"Authorization: Bearer {stack.token}", "--max-examples", "100"]
        # A read may wait up to wait_ms (at most 10 s) by contract: the time limit is above it.
        command += ["--workers", "4", "--max-response-time", "15"]
        if api == "query":  # a 200 stream never ends; tests/integration/test_stats_stream.py
            command += ["--exclude-path", "/stats/stream"]
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, timeout=600, check=False
        )
        report = done.stdout.decode(errors="replace")
        assert done.returncode == 0, report[-6000:]
        assert "No issues found" in report
    finally:
        deployment.stop_all()
