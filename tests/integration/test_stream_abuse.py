"""One client cannot take the query API's streams: a hostile client that asks for every window
(1..3600, eight per connection) and for every stream slot gets its share and no more; the
readers stay one per streamed window, on a pool of their own; and `GET /stats` keeps
answering within the latency it had without the attack, measured in the same test.

The machine is shared, so the latency check is built not to flake: many samples, medians, the
baseline measured both before the attack and after it ends (the slower of the two: a machine
that got busier during the test raises both), and a generous bound. The share counts are exact
and decide the outcome of code without the stream bounds.

The query API runs on a real socket with a real PostgreSQL; the test connects from 127.0.0.1,
which it configures as the trusted proxy, so `X-Forwarded-For` tells the clients apart as it
would behind the load balancer."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from contextlib import AsyncExitStack

import asyncpg
import httpx

from shared.settings import DEFAULT_STREAM_WINDOWS
from tests.integration.stream_support import EventReader, Served, serve_query
from tests.integration.test_query_api import seed_partition

HOSTILE = "203.0.113.7"
VICTIM = "198.51.100.1"
SLOTS = 450  # as many as it takes to ask every window once: 3600 / 8
PER_CLIENT = 4
SAMPLES = 150
# `GET /stats` under the attack: at most this many times the baseline, plus a margin that
# absorbs a scheduler hiccup on a request of a few milliseconds.
SLOWER = 3
MARGIN_SECONDS = 0.02


async def stats_latencies(client: httpx.AsyncClient) -> list[float]:
    """`SAMPLES` window reads, one after another, each timed."""
    seconds = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        response = await client.get("/stats", params={"window": 60})
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return seconds


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


async def until_streams(served: Served, count: int) -> None:
    async with asyncio.timeout(10):
        while served.broadcaster.clients != count:
            await asyncio.sleep(0.01)


async def open_stream(client: httpx.AsyncClient, stack: AsyncExitStack, windows: list[int]) -> int:
    """Ask for a stream of `windows`; keep it open (never read) when it is granted."""
    request = client.build_request(
        "GET", "/stats/stream", params=[("window", str(w)) for w in windows]
    )
    response = await client.send(request, stream=True)
    if response.status_code == 200:
        stack.push_async_callback(response.aclose)
    else:
        await response.aread()
        await response.aclose()
    return response.status_code


async def test_a_hostile_client_asking_every_window_and_slot_leaves_stats_answering(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await seed_partition(pg_pool, 0, next_offset=1, amounts=["1.00"])
    async with (
        serve_query(
            database_url,
            stream_max_clients=SLOTS,
            stream_max_per_client=PER_CLIENT,
            trusted_proxies="127.0.0.1",
        ) as served,
        httpx.AsyncClient(
            base_url=served.base_url, headers={"X-Forwarded-For": VICTIM}, timeout=30
        ) as victim,
        httpx.AsyncClient(
            base_url=served.base_url,
            headers={"X-Forwarded-For": HOSTILE},
            timeout=30,
            limits=httpx.Limits(max_connections=SLOTS * 2),
        ) as hostile,
    ):
        before = await stats_latencies(victim)
        async with AsyncExitStack() as held:
            answers: Counter[int] = Counter()
            for first in range(1, 3601, 8):  # every window there is, eight per stream
                windows = list(range(first, min(first + 8, 3601)))
                answers[await open_stream(hostile, held, windows)] += 1
            streamed = list(DEFAULT_STREAM_WINDOWS)
            for _ in range(SLOTS):  # then every slot, with windows that are streamed
                answers[await open_stream(hostile, held, streamed[:8])] += 1
            assert answers[200] == PER_CLIENT, answers  # its share, no more
            assert answers[429] == SLOTS - PER_CLIENT, answers
            assert answers[422] == 450, answers  # every window outside the streamed set
            await until_streams(served, PER_CLIENT)
            assert served.broadcaster.readers <= len(DEFAULT_STREAM_WINDOWS) + 1

            during = await stats_latencies(victim)
            async with victim.stream("GET", "/stats/stream") as mine:
                assert mine.status_code == 200  # another client still gets a stream
                assert (await EventReader(mine).next()).data["count"] == 1
        await until_streams(served, 0)
        after = await stats_latencies(victim)

    for summary in (statistics.median, p90):
        baseline = max(summary(before), summary(after))
        assert summary(during) <= SLOWER * baseline + MARGIN_SECONDS, (
            summary.__name__,
            summary(before),
            summary(during),
            summary(after),
        )


async def test_without_a_trusted_proxy_the_peer_is_the_client(database_url: str) -> None:
    """X-Forwarded-For from a peer that is not a trusted proxy changes nothing: one address,
    one share, whatever it claims to be."""
    async with (
        serve_query(database_url, stream_max_per_client=2) as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=30) as client,
        AsyncExitStack() as held,
    ):
        codes = []
        for claimed in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            client.headers["X-Forwarded-For"] = claimed
            codes.append(await open_stream(client, held, [60]))
    assert codes == [200, 200, 429]
