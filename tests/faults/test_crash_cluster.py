"""Crash faults on a private 3-node KRaft cluster (replication factor 3, min.insync.replicas 2),
as an operator would cause them: kill -9, never a graceful stop.

Under continuous POSTs, single and batch (one connection per producer, retries with the same
id):
- the broker leading the most partitions is killed with SIGKILL, then restarted; then another
  broker is killed;
- PostgreSQL (postmaster and backends) is killed with SIGKILL while the projector folds, and
  restarted.

The contract: a POST answers 201 (each event is in the log at the position it names) or 503
problem+json, never later than `PUBLISH_TIMEOUT_SECONDS` + 1 s (by the client's clock and by the
server's own request-duration histogram); in the end the projection counts every id in the log
once, with exact sums, and its 1-second buckets equal the ground truth. Each fault reports its
window: seconds from the kill to the next 201 and to the next fresh read (a `GET /stats` with
the consistency token of a POST sent after the kill answering 200).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.faults.harness import (
    PROBLEM_JSON,
    Deployment,
    PrivateCluster,
    Service,
    cluster_stack,
    kill_postgres,
    projection,
    stack_async,
    totals_of,
)
from tests.faults.load import (
    Ledger,
    produce,
    produce_batches,
    retry_until_acknowledged,
    wait_for_acks,
)
from tests.faults.report import AddRow, Outage, Outcome
from tests.integration.command_support import end_offsets, read_all
from tests.integration.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# 4 s, so that the bound (timeout + 1 s) is a bucket edge of http_request_duration_seconds.
PUBLISH_TIMEOUT_SECONDS = 4.0
BOUND_SECONDS = PUBLISH_TIMEOUT_SECONDS + 1
PRODUCERS = 8
# Batches take another path through the publisher than single events (many records at once
# into each partition's record batch): producers of batches of BATCH_ITEMS post beside them.
BATCH_PRODUCERS = 2
BATCH_ITEMS = 25
LIMIT = 20_000  # transactions at most; each phase also ends on acknowledgements


@dataclass(frozen=True)
class Read:
    at: float  # when the answer came
    status: int | None
    token_sent: float  # when the POST whose token it asked for was sent
    content_type: str | None = None


@dataclass
class Load:
    """Producers (a connection each) and a reader probing read-your-writes."""

    api: Service
    query: Service
    ledger: Ledger
    reads: list[Read]
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]
    clients: list[httpx.AsyncClient]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.aclose()
        self.tasks, self.clients = [], []

    def next_201(self, since: float) -> float:
        """Seconds from `since` to the first 201 of a POST sent after it."""
        sent_after = [
            a.started + a.seconds
            for a in self.ledger.attempts
            if a.status == 201 and a.started > since
        ]
        return min(sent_after) - since

    def every_partition_201(self, since: float) -> float:
        """Seconds from `since` until every partition has acknowledged a POST sent after it."""
        first: dict[int, float] = {}
        for a in self.ledger.attempts:
            if a.status == 201 and a.started > since and a.position is not None:
                end = a.started + a.seconds
                first[a.position[0]] = min(first.get(a.position[0], end), end)
        return max(first.values()) - since

    def next_fresh_read(self, since: float) -> float:
        return min(r.at for r in self.reads if r.status == 200 and r.token_sent > since) - since

    def fresh_read_after(self, since: float) -> bool:
        return any(r.status == 200 and r.token_sent > since for r in self.reads)


async def start_load(deployment: Deployment, prefix: str) -> Load:
    api = deployment.command_api(PUBLISH_TIMEOUT_SECONDS=str(PUBLISH_TIMEOUT_SECONDS))
    deployment.projector()
    query = deployment.query_api()
    await api.wait_ready()
    await query.wait_ready()
    ledger = Ledger(seed=20261130, prefix=prefix)
    stop = asyncio.Event()
    reads: list[Read] = []
    # One connection per producer: a shared pool would add its own queueing to the timings.
    clients = [
        httpx.AsyncClient(
            base_url=api.url,
            timeout=httpx.Timeout(PUBLISH_TIMEOUT_SECONDS + 10),
            limits=httpx.Limits(max_connections=1),
        )
        for _ in range(PRODUCERS + BATCH_PRODUCERS)
    ]
    tasks = [
        asyncio.create_task(produce(client, ledger, stop, limit=LIMIT, pause=0.05))
        for client in clients[:PRODUCERS]
    ]
    tasks += [
        asyncio.create_task(
            produce_batches(client, ledger, stop, size=BATCH_ITEMS, limit=LIMIT, pause=0.05)
        )
        for client in clients[PRODUCERS:]
    ]
    tasks.append(asyncio.create_task(probe_reads(query.url, ledger, reads, stop)))
    return Load(api, query, ledger, reads, stop, tasks, clients)


async def probe_reads(url: str, ledger: Ledger, reads: list[Read], stop: asyncio.Event) -> None:
    """Every 0.1 s: can the query API serve the latest acknowledged write yet?"""
    async with httpx.AsyncClient(base_url=url, timeout=15) as client:
        while not stop.is_set():
            latest = max(
                (a for a in ledger.attempts if a.token is not None),
                key=lambda a: a.started,
                default=None,
            )
            if latest is not None:
                try:
                    response = await client.get(
                        "/stats", params={"consistency_token": latest.token, "wait_ms": 0}
                    )
                    status, content_type = (
                        response.status_code,
                        response.headers.get("content-type"),
                    )
                except httpx.HTTPError:
                    status, content_type = None, None
                reads.append(Read(time.monotonic(), status, latest.started, content_type))
            await asyncio.sleep(0.1)


async def leaders(cluster: PrivateCluster, topic: str) -> Counter[int]:
    """How many of the topic's partitions each node leads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return Counter(p["leader"] for p in described["partitions"] if p["leader"] >= 0)


async def fully_replicated(cluster: PrivateCluster, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return all(len(p["isr"]) == len(p["replicas"]) for p in described["partitions"])


async def server_answers_within(api: Service, bound: float) -> tuple[int, int]:
    """(POSTs answered within `bound` seconds, all POSTs), single and batch, by the server's
    own histogram."""
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    within = total = 0
    for line in text.splitlines():
        if not line.startswith("http_request_duration_seconds_bucket{"):
            continue
        if 'method="POST"' not in line or 'route="/transactions' not in line:
            continue
        value = int(float(line.rsplit(" ", 1)[1]))
        if f'le="{bound}"' in line:
            within += value
        elif 'le="+Inf"' in line:
            total += value
    return within, total


async def second_buckets(database_url: str) -> dict[int, tuple[int, Decimal]]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT bucket, sum(tx_count)::bigint AS tx_count, sum(tx_sum) AS tx_sum"
            " FROM second_buckets WHERE version = (SELECT version FROM projection_active)"
            " GROUP BY bucket"
        )
    finally:
        await conn.close()
    return {row["bucket"]: (row["tx_count"], row["tx_sum"]) for row in rows}


async def finish_and_check(deployment: Deployment, load: Load) -> None:
    """Stop the load, retry what was not confirmed, and check the log and the projection."""
    await load.close()
    ledger = load.ledger
    first = ledger.first_attempts()
    assert {a.status for a in first} <= {201, 503}, Counter(a.status for a in first)
    for attempt in ledger.attempts:
        if attempt.status == 503:
            assert attempt.content_type == PROBLEM_JSON
            assert attempt.problem_type is not None
            assert attempt.problem_type.endswith("/event-log-unavailable")
    # The publish bound, by the server's own histogram and by the client (a connection per
    # producer, so no pool queueing; on a saturated machine its clock adds scheduling delay).
    within, total = await server_answers_within(load.api, BOUND_SECONDS)
    assert total >= ledger.first_requests
    assert within == total, f"{total - within} POSTs answered after {BOUND_SECONDS} s"
    assert ledger.slowest() <= BOUND_SECONDS, ledger.slowest()
    assert {r.status for r in load.reads} <= {200, 503}, Counter(r.status for r in load.reads)
    assert all(r.content_type == PROBLEM_JSON for r in load.reads if r.status == 503)

    async with httpx.AsyncClient(
        base_url=load.api.url, timeout=PUBLISH_TIMEOUT_SECONDS + 10
    ) as client:
        await retry_until_acknowledged(client, ledger, ledger.unacknowledged(), timeout=90)

    ends = await end_offsets(deployment.kafka)

    async def folded_all() -> bool:
        return (await projection(deployment.database_url)).consumed >= sum(ends.values())

    await wait_until(folded_all, timeout=120)
    records = await read_all(deployment.kafka)
    keys = Counter(record.key.decode() for record in records)
    at = {(record.partition, record.offset): record.key.decode() for record in records}
    assert set(keys) == set(ledger.amounts)  # every id in the log was sent by us, and all are
    for position, transaction_id in ledger.positions().items():
        assert at[position] == transaction_id  # every 201 is in the log where it said

    totals = await projection(deployment.database_url)
    expected = totals_of(ledger.amounts)  # = the distinct ids in the log
    assert (totals.count, totals.sum, totals.max, totals.min) == expected

    truth: dict[int, tuple[int, Decimal]] = {}
    for transaction_id, amount in ledger.amounts.items():
        count, total_amount = truth.get(ledger.seconds[transaction_id], (0, Decimal(0)))
        truth[ledger.seconds[transaction_id]] = (count + 1, total_amount + amount)
    assert await second_buckets(deployment.database_url) == truth


async def test_postgres_sigkill_during_fold(
    cluster: PrivateCluster, cluster_deployment: Deployment, report_row: AddRow
) -> None:
    load = await start_load(cluster_deployment, "crash-pg")
    try:
        await wait_until(
            lambda: _counted_at_least(cluster_deployment.database_url, 300),
            timeout=60,
            interval=0.1,
        )
        kill_at = await asyncio.to_thread(kill_postgres)
        await stack_async("pg-up")
        up_after = time.monotonic() - kill_at
        await wait_until(lambda: _fresh(load, kill_at), timeout=90, interval=0.1)
        before = len(load.ledger.attempts)
        await wait_for_acks(load.ledger, 100, since=before, timeout=60)
    finally:
        await load.close()
        with contextlib.suppress(Exception):
            await stack_async("pg-up")  # whatever happened, the next test gets a database
    await finish_and_check(cluster_deployment, load)
    statuses = Counter(a.status for a in load.ledger.first_attempts())
    reads = Counter(r.status for r in load.reads)
    report_row(
        Outcome(
            fault="**3-node cluster**: PostgreSQL `SIGKILL`ed (postmaster and every backend) "
            "while folding, restarted (crash recovery)",
            sent=len(load.ledger.amounts),
            acknowledged=statuses[201],
            not_confirmed=f"{statuses[503]:,} x 503 to POSTs; reads: {reads[503]:,} x 503 "
            f"problem+json until it is back, {reads[200]:,} x 200",
            counted=f"{len(load.ledger.amounts):,}, exact sums and 1-second buckets",
        )
    )
    report_row(
        Outage(
            crash=f"PostgreSQL `SIGKILL` (restarted {up_after:.2f} s after the kill)",
            next_201=f"{load.next_201(kill_at):.2f} s (the command API does not use it)",
            every_partition="—",
            next_fresh_read=f"{load.next_fresh_read(kill_at):.2f} s",
        )
    )


async def test_broker_kill9_leader_then_another(
    cluster: PrivateCluster, cluster_deployment: Deployment, report_row: AddRow
) -> None:
    topic = cluster_deployment.kafka.topic
    load = await start_load(cluster_deployment, "crash-broker")
    windows: list[Outage] = []
    killed: list[int] = []
    try:
        await wait_for_acks(load.ledger, 200, since=0, timeout=60)
        for round_ in (1, 2):
            led = await leaders(cluster, topic)
            # The leader of the most partitions; the second time another node than the first.
            candidates = sorted(node for node in cluster.ports if node not in killed)
            victim = max(candidates, key=lambda node: led[node])
            before = len(load.ledger.attempts)
            kill_at = await asyncio.to_thread(cluster.kill, victim)
            killed.append(victim)
            await wait_for_acks(load.ledger, 200, since=before, timeout=60)
            await wait_until(functools.partial(_fresh, load, kill_at), timeout=60, interval=0.1)
            every_partition = functools.partial(_all_partitions, load, kill_at)
            await wait_until(every_partition, timeout=60, interval=0.1)
            windows.append(
                Outage(
                    crash=f"`kill -9` of a broker leading {led[victim]} of 6 partitions"
                    + (", then of another" if round_ == 2 else ""),
                    next_201=f"{load.next_201(kill_at):.2f} s",
                    every_partition=f"{load.every_partition_201(kill_at):.2f} s",
                    next_fresh_read=f"{load.next_fresh_read(kill_at):.2f} s",
                )
            )
            if round_ == 1:  # restarted; the second kill hits another broker
                await asyncio.to_thread(cluster_stack, "kafka-up")
                await wait_until(lambda: fully_replicated(cluster, topic), timeout=120)
                before = len(load.ledger.attempts)
                await wait_for_acks(load.ledger, 100, since=before, timeout=60)
    finally:
        await load.close()
    # The second victim stays down: nothing after this test needs three nodes, and the
    # session's `kafka-down` stops the rest.
    await finish_and_check(cluster_deployment, load)
    statuses = Counter(a.status for a in load.ledger.first_attempts())
    batched = sum(1 for a in load.ledger.first_attempts() if a.batch and a.status == 201)
    report_row(
        Outcome(
            fault="**3-node cluster** (RF 3, `min.insync.replicas=2`): `kill -9` of the broker "
            "leading the most partitions, restarted; then `kill -9` of another, under "
            f"continuous POSTs, single and in batches of {BATCH_ITEMS}",
            sent=len(load.ledger.amounts),
            acknowledged=statuses[201],
            not_confirmed=f"{statuses[503]:,} x 503 problem+json, retried with the same ids "
            f"until 201; slowest answer {load.ledger.slowest():.2f} s (bound "
            f"{BOUND_SECONDS:g} s)",
            counted=f"{len(load.ledger.amounts):,} (= distinct ids in the log; every 201 at "
            f"its returned position, {batched:,} of them batch items; 1-second buckets = ground "
            "truth)",
        )
    )
    for window in windows:
        report_row(window)


async def _fresh(load: Load, since: float) -> bool:
    return load.fresh_read_after(since)


async def _all_partitions(load: Load, since: float) -> bool:
    seen = {
        a.position[0]
        for a in load.ledger.attempts
        if a.status == 201 and a.started > since and a.position is not None
    }
    return len(seen) == 6


async def _counted_at_least(database_url: str, count: int) -> bool:
    return (await projection(database_url)).count >= count
