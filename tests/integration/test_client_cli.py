"""The `txstats` CLI against the real stack (processes on the shared Kafka and PostgreSQL, this
test's topic and database): an import with bad lines, an import interrupted and resumed, and a
reader waiting for the import's consistency token. Every count is exact."""

from __future__ import annotations

import csv
import json
import signal
import time
from decimal import Decimal
from pathlib import Path

import msgspec

from tests.faults.harness import Deployment
from tests.integration.client_support import start_stack, write_csv
from tests.integration.conftest import TopicFactory


async def test_an_import_with_bad_lines_counts_exactly_and_lists_them(
    kafka_settings: TopicFactory, database_url: str, tmp_path: Path
) -> None:
    deployment = Deployment(await kafka_settings(), database_url, tmp_path)
    try:
        stack = await start_stack(deployment)
        data = tmp_path / "transactions.csv"
        bad = {10: "12.345,2026-01-01T00:00:00Z", 500: "1.00", 2001: "abc,2026-01-01T00:00:00Z"}
        cents = write_csv(data, 3000, bad=bad)
        status, result = stack.cli("import", str(data))
        assert status == 1, result  # finished, with refused lines
        assert (result["accepted"], result["refused"], result["refused_by_client"]) == (2997, 3, 1)
        assert result["done"]
        with (tmp_path / "transactions.csv.errors.csv").open() as errors:
            rows = list(csv.reader(errors))
        assert [int(row[0]) for row in rows] == sorted(bad)
        assert "fractional" in rows[0][1]

        token = result["consistency_token"]
        status, stats = stack.cli("stats", "--wait-for", token)
        assert status == 0
        assert stats["count"] == 2997
        assert Decimal(stats["sum"]) == Decimal(cents) / 100

        again = stack.cli("import", str(data))
        assert again == (1, result)  # nothing is sent twice: the state says done
    finally:
        deployment.stop_all()


async def test_an_interrupted_import_resumes_and_counts_each_line_once(
    kafka_settings: TopicFactory, database_url: str, tmp_path: Path
) -> None:
    deployment = Deployment(await kafka_settings(), database_url, tmp_path)
    try:
        stack = await start_stack(deployment)
        data = tmp_path / "big.csv"
        cents = write_csv(data, 60_000)
        state = tmp_path / "big.csv.txstats-import.json"
        running = stack.start_cli("import", str(data), "--batch-size", "500", "--in-flight", "2")
        deadline = time.monotonic() + 120
        while not state.exists() or msgspec.json.decode(state.read_bytes())["next_line"] < 5000:
            assert running.poll() is None, running.stderr.read() if running.stderr else ""
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.05)
        running.send_signal(signal.SIGINT)  # Ctrl-C, mid-import
        out, _ = running.communicate(timeout=60)
        assert running.returncode == 130
        interrupted = msgspec.json.decode(out.decode().splitlines()[-1])
        assert not interrupted["done"]
        assert 0 < interrupted["accepted"] < 60_000

        status, result = stack.cli("import", str(data))
        assert status == 0, result
        assert result["accepted"] == 60_000  # across both runs, each line once
        assert result["refused"] == 0

        status, stats = stack.cli("stats", "--wait-for", result["consistency_token"])
        assert stats["count"] == 60_000
        assert Decimal(stats["sum"]) == Decimal(cents) / 100
    finally:
        deployment.stop_all()


async def test_ids_with_reserved_characters_and_dot_segments_are_found(
    kafka_settings: TopicFactory, database_url: str, tmp_path: Path
) -> None:
    """Ids the command API accepts (`[A-Za-z0-9._:-]`) that a path would mangle unescaped:
    each is found by `txstats status`, with its own amount."""
    deployment = Deployment(await kafka_settings(), database_url, tmp_path)
    try:
        stack = await start_stack(deployment)
        ids = ["a:b", "..", ".", "...", "x.y", ":", "-"]
        data = tmp_path / "odd.ndjson"
        data.write_text(
            "".join(
                json.dumps(
                    {
                        "amount": f"{i + 1}.25",
                        "timestamp": "2026-01-01T00:00:00Z",
                        "transaction_id": t,
                    }
                )
                + "\n"
                for i, t in enumerate(ids)
            )
        )
        token_file = tmp_path / "token"
        token_file.write_text(stack.token + "\n")
        stack.token = ""  # the token file alone
        status, result = stack.cli("--token-file", str(token_file), "import", str(data))
        assert status == 0, result
        assert result["accepted"] == len(ids)
        written = result["consistency_token"]
        for i, transaction_id in enumerate(ids):
            status, found = stack.cli(
                "--token-file", str(token_file), "status", transaction_id, "--wait-for", written
            )
            assert status == 0, found
            assert (found["state"], found["transaction_id"]) == ("counted", transaction_id)
            assert Decimal(found["amount"]) == Decimal(f"{i + 1}.25")
    finally:
        deployment.stop_all()
