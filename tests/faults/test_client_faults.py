"""The client under faults, against real processes on the private stack: the broker stopped in
the middle of a CLI import (its 503s are retried, the import finishes on its own), and the
command API killed with SIGKILL in the middle of `record_many` and started again. Both end with
every transaction counted exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest

from client import Accepted, AsyncTxStats, RetryPolicy, Transaction
from tests.faults.harness import ROOT, Deployment, projection, stack_async
from tests.integration.client_support import client_token, write_csv
from tests.integration.command_support import end_offsets, read_all
from tests.integration.support import wait_until

pytestmark = pytest.mark.integration

LINES = 40_000
OUTAGE_SECONDS = 10


async def folded_everything(deployment: Deployment) -> None:
    ends = await end_offsets(deployment.kafka)

    async def folded() -> bool:
        return (await projection(deployment.database_url)).consumed >= sum(ends.values())

    await wait_until(folded, timeout=120)


async def publish_failures(url: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    return sum(
        float(v) for v in re.findall(r"^event_publish_failures_total\{.*\} (\S+)$", text, re.M)
    )


async def test_an_import_rides_out_a_broker_outage(deployment: Deployment, tmp_path: Path) -> None:
    api = deployment.command_api()
    deployment.projector()
    await api.wait_ready()
    data = tmp_path / "outage.csv"
    cents = write_csv(data, LINES)
    state = tmp_path / "outage.csv.txstats-import.json"
    env = {"PYTHONPATH": str(ROOT), "TXSTATS_COMMAND_URL": api.url, "TXSTATS_TOKEN": client_token()}
    command = [sys.executable, "-m", "client", "import", str(data), "--json"]
    command += ["--batch-size", "200", "--in-flight", "2", "--give-up-after", "120"]
    importing = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not state.exists() or msgspec.json.decode(state.read_bytes())["next_line"] < 3000:
            assert importing.poll() is None, importing.communicate()
            assert time.monotonic() < deadline, "the import made no progress"
            await asyncio.sleep(0.05)
        await stack_async("kafka-down")
        try:
            await asyncio.sleep(OUTAGE_SECONDS)
            assert importing.poll() is None, "the import ended during the outage"
        finally:
            await stack_async("kafka-up")
        out, err = await asyncio.to_thread(importing.communicate, timeout=300)
    finally:
        if importing.poll() is None:
            importing.kill()
    assert importing.returncode == 0, err.decode()[-2000:]
    result = msgspec.json.decode(out.decode().splitlines()[-1])
    assert (result["accepted"], result["refused"]) == (LINES, 0)
    assert await publish_failures(api.url) > 0  # the outage reached requests: 503s, retried

    await folded_everything(deployment)
    totals = await projection(deployment.database_url)
    assert (totals.count, totals.sum) == (LINES, Decimal(cents) / 100)


async def transactions(count: int) -> AsyncIterator[Transaction]:
    for index in range(count):
        amount = Decimal(1 + index % 997) / 100 + 1
        yield Transaction(
            amount=amount, timestamp="2026-01-01T00:00:00Z", transaction_id=f"k-{index}"
        )
        if index % 100 == 0:
            await asyncio.sleep(0)


class Attempts(httpx.AsyncBaseTransport):
    """The network, counting each request body sent (a retry sends its body again), the
    requests out right now, and the ones that got no answer (by error type)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: Counter[bytes] = Counter()
        self.out = 0
        self.failed: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies[hashlib.sha256(request.content).digest()] += 1
        self.out += 1
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()
        except httpx.TransportError as err:
            self.failed[type(err).__name__] += 1
            raise
        finally:
            self.out -= 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_record_many_counts_exactly_through_a_kill_9_of_the_command_api(
    deployment: Deployment,
) -> None:
    api = deployment.command_api()
    deployment.projector()
    await api.wait_ready()
    count, killed_after = 30_000, 5_000
    outcomes: list[Accepted] = []
    retry = RetryPolicy(base=0.05, cap=1.0, give_up_after=120)
    attempts = Attempts()
    async with AsyncTxStats(
        command_url=api.url, token=client_token(), retry=retry, command_transport=attempts
    ) as client:
        restarted = None
        async for outcome in client.record_many(transactions(count), batch_size=500):
            assert isinstance(outcome, Accepted), outcome
            outcomes.append(outcome)
            # Killed once a request is out: its answer is lost, whatever the server did.
            if restarted is None and len(outcomes) >= killed_after and attempts.out:
                api.kill(signal.SIGKILL)
                restarted = deployment.command_api(port=api.port)
        assert restarted is not None, "no request was ever out when the kill was due"
        assert restarted.alive()
    assert [o.transaction_id for o in outcomes] == [f"k-{i}" for i in range(count)]

    records = await read_all(deployment.kafka)
    keys = Counter(record.key.decode() for record in records)
    assert set(keys) == {f"k-{i}" for i in range(count)}  # nothing lost, nothing foreign
    # The kill hit work in flight: the client retried, or a batch landed twice (same keys).
    retried = max(attempts.bodies.values()) > 1
    assert retried or max(keys.values()) > 1, attempts.failed
    assert attempts.failed, "no request lost its answer or its connection"
    await folded_everything(deployment)
    totals = await projection(deployment.database_url)
    expected = sum((Decimal(1 + i % 997) / 100 + 1 for i in range(count)), Decimal(0))
    assert (totals.count, totals.sum) == (count, expected)
