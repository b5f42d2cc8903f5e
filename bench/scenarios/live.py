"""What the freshness and stream scenarios share: the three services running against one
topic and database, and the paced client posting to them (open loop, every 10 ms one single
POST, the probe, and one batch POST with the rest of the tick's transactions, the way a
high-frequency producer uses the batch endpoint)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol

from bench.http import HttpError, Pool
from bench.procs import Service, Watched, running
from bench.scenarios import Context
from bench.scenarios.fold import projector_service
from shared.settings import KafkaSettings

TICK_SECONDS = 0.01

Probe = Callable[[bytes, float, float], Awaitable[None]]
"""Called with a probe's 201 body, and when it was sent and accepted (`perf_counter`)."""


class Tally(Protocol):
    posts: int
    errors: Counter[str]


class LiveStack:
    """The command API, query API and projector, and what a run watches: this process (the
    client), the three services and the shared Kafka and PostgreSQL."""

    def __init__(self, command: Service, query: Service, projector: Service, ctx: Context):
        self.command = command
        self.query = query
        self.watch = [
            Watched("client", os.getpid()),
            command.watched(),
            query.watched(),
            projector.watched(),
            *ctx.watch_infra,
        ]


@contextmanager
def live_stack(
    ctx: Context, topic: KafkaSettings, database_url: str, env: Mapping[str, str], cpus: str | None
) -> Iterator[LiveStack]:
    command = Service.api("command_api", env=env, cpus=cpus, log_dir=ctx.log_dir)
    query = Service.api("query_api", env=env, cpus=cpus, log_dir=ctx.log_dir)
    projector = projector_service(ctx, topic, database_url, cpus=cpus)
    with running(command, query, projector):
        yield LiveStack(command, query, projector, ctx)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def post_paced(
    posts: Pool, token: str, *, rate: int, seconds: float, tally: Tally, on_probe: Probe
) -> set[asyncio.Task[None]]:
    """Post `rate` transactions a second for `seconds`, counting posts and failures in
    `tally`; return the posts still in flight."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    tasks: set[asyncio.Task[None]] = set()

    async def one(items: int) -> None:
        """POST `items` transactions: one (a probe) as a single POST, more as a batch."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        item = {"amount": "1.00", "timestamp": stamp}
        probe = items == 1
        path = "/transactions" if probe else "/transactions/batch"
        body = json.dumps(item if probe else {"transactions": [item] * items}).encode()
        started = time.perf_counter()
        try:
            status, payload = await posts.request("POST", path, headers, body)
            accepted = time.perf_counter()
            if status != 201:
                tally.errors[f"POST {status}"] += 1
                return
            tally.posts += items
            if probe:
                await on_probe(payload, started, accepted)
        except (OSError, HttpError, ValueError, KeyError) as err:
            tally.errors[type(err).__name__] += 1

    per_tick = max(1, round(rate * TICK_SECONDS))
    loop = asyncio.get_running_loop()
    begin = loop.time()
    while (now := loop.time()) < begin + seconds:
        for items in (1, per_tick - 1) if per_tick > 1 else (1,):
            task = asyncio.create_task(one(items))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        ticks = int((now - begin) / TICK_SECONDS) + 1
        await asyncio.sleep(max(0.0, begin + ticks * TICK_SECONDS - loop.time()))
    return tasks
