"""Open-loop load: one request every 1/rate seconds for a while, whatever the answers, each
request's latency counted from when it was due (not from when the client got round to it, so
a stalled server shows in the figures instead of slowing the load down). For latency at a
given rate, where wrk's closed loop only measures at saturation.

The client is this process on the client core; its own CPU share is reported, so a run where
it could not keep the pace shows (`late`: requests sent more than a millisecond after they
were due).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.http import HttpError, Pool
from bench.procs import CpuMeter, Watched
from bench.wrk import Request

LATE_SECONDS = 0.001


@dataclass(slots=True)
class PacedResult:
    rate: float  # the pace asked for, requests a second
    seconds: float = 0.0
    ok: int = 0
    late: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    def percentile(self, pct: float) -> float:
        if not self.latency_ms:
            return float("nan")
        ordered = sorted(self.latency_ms)
        return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


async def paced(
    base_url: str,
    request: Request,
    *,
    rate: float,
    seconds: float,
    watch: Sequence[Watched] = (),
    connections: int = 256,
) -> PacedResult:
    """Send `request` `rate` times a second for `seconds`; wait for the last answers."""
    pool = Pool(base_url, limit=connections)
    result = PacedResult(rate=rate)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    body = request.body or b""

    async def one(due: float) -> None:
        if loop.time() - due > LATE_SECONDS:
            result.late += 1
        try:
            status, _ = await pool.request(request.method, request.path, request.headers, body)
        except (OSError, HttpError, ValueError) as err:
            result.errors[type(err).__name__] += 1
            return
        if status >= 400:
            result.errors[str(status)] += 1
            return
        result.ok += 1
        result.latency_ms.append(1000 * (loop.time() - due))

    meter = CpuMeter([Watched("client", os.getpid()), *watch])
    interval = 1 / rate
    count = int(rate * seconds)
    meter.start()
    begin = loop.time()
    for index in range(count):
        due = begin + index * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    result.seconds = loop.time() - begin
    result.cpu = meter.stop()
    pool.close()
    return result
