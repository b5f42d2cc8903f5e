"""Producers for the fault tests: POST transactions continuously (each with its own client
transaction id and amount), one at a time or in batches, record every outcome (a batch's
per item), retry what was not acknowledged."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from tests.faults.harness import PROBLEM_JSON, transaction_body, writer_token


@dataclass(frozen=True)
class Attempt:
    transaction_id: str
    status: int | None  # None: no answer (connection refused or reset, client timeout)
    seconds: float
    problem_type: str | None = None
    retry_after: str | None = None
    content_type: str | None = None
    position: tuple[int, int] | None = None  # where a 201 says the event is
    error: str | None = None
    retry: bool = False
    started: float = 0.0  # time.monotonic() when the request was sent
    token: str | None = None  # a 201's consistency token
    batch: bool = False  # an item of a POST /transactions/batch


@dataclass
class Ledger:
    """Every transaction a test sent and every answer it got."""

    seed: int = 1
    prefix: str = "tx"
    amounts: dict[str, Decimal] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    seconds: dict[str, int] = field(default_factory=dict)  # event time, epoch second
    first_requests: int = 0  # HTTP requests sent that were not retries

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._token = writer_token()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}

    def new_transaction(self) -> str:
        transaction_id = f"{self.prefix}-{len(self.amounts):06d}"
        amount = Decimal(self._rng.randint(1, 10**7)) / 100
        now = datetime.now(UTC)
        stamp = now.isoformat().replace("+00:00", "Z")
        self.seconds[transaction_id] = int(now.timestamp())
        self.amounts[transaction_id] = amount
        self.bodies[transaction_id] = transaction_body(transaction_id, amount, stamp)
        return transaction_id

    def first_attempts(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.retry]

    def statuses(self, *, since: int = 0) -> Counter[int | None]:
        return Counter(a.status for a in self.attempts[since:])

    def acknowledged(self) -> set[str]:
        return {a.transaction_id for a in self.attempts if a.status == 201}

    def unacknowledged(self) -> list[str]:
        done = self.acknowledged()
        return [t for t in self.amounts if t not in done]

    def acknowledged_amounts(self) -> dict[str, Decimal]:
        return {t: self.amounts[t] for t in self.acknowledged()}

    def positions(self) -> dict[tuple[int, int], str]:
        """Every (partition, offset) a 201 named, and the id it was named for."""
        return {a.position: a.transaction_id for a in self.attempts if a.position is not None}

    def slowest(self) -> float:
        return max((a.seconds for a in self.attempts), default=0.0)


async def post_once(
    client: httpx.AsyncClient, ledger: Ledger, transaction_id: str, *, retry: bool = False
) -> Attempt:
    ledger.first_requests += not retry
    started = time.monotonic()
    try:
        response = await client.post(
            "/transactions", content=ledger.bodies[transaction_id], headers=ledger.headers
        )
    except httpx.HTTPError as err:
        attempt = Attempt(
            transaction_id,
            None,
            time.monotonic() - started,
            error=type(err).__name__,
            retry=retry,
            started=started,
        )
        ledger.attempts.append(attempt)
        return attempt
    seconds = time.monotonic() - started
    content_type = response.headers.get("content-type")
    problem: Any = response.json() if content_type == PROBLEM_JSON else {}
    position = token = None
    if response.status_code == 201:
        recorded = response.json()
        assert recorded["transaction_id"] == transaction_id
        position = (recorded["position"]["partition"], recorded["position"]["offset"])
        token = recorded["consistency_token"]
    attempt = Attempt(
        transaction_id,
        response.status_code,
        seconds,
        problem_type=problem.get("type"),
        retry_after=response.headers.get("retry-after"),
        content_type=content_type,
        position=position,
        retry=retry,
        started=started,
        token=token,
    )
    ledger.attempts.append(attempt)
    return attempt


async def post_batch_once(client: httpx.AsyncClient, ledger: Ledger, ids: list[str]) -> None:
    """POST `ids` as one batch; record an attempt per item (at its own position on a 201)."""
    ledger.first_requests += 1
    items = [json.loads(ledger.bodies[transaction_id]) for transaction_id in ids]
    started = time.monotonic()
    try:
        response = await client.post(
            "/transactions/batch",
            content=json.dumps({"transactions": items}).encode(),
            headers=ledger.headers,
        )
    except httpx.HTTPError as err:
        seconds = time.monotonic() - started
        for transaction_id in ids:
            ledger.attempts.append(
                Attempt(
                    transaction_id,
                    None,
                    seconds,
                    error=type(err).__name__,
                    started=started,
                    batch=True,
                )
            )
        return
    seconds = time.monotonic() - started
    content_type = response.headers.get("content-type")
    problem: Any = response.json() if content_type == PROBLEM_JSON else {}
    recorded: list[Any] = [None] * len(ids)
    token = None
    if response.status_code == 201:
        answer = response.json()
        recorded, token = answer["transactions"], answer["consistency_token"]
        assert [item["transaction_id"] for item in recorded] == ids  # in request order
    for transaction_id, item in zip(ids, recorded, strict=True):
        position = None
        if item is not None:
            position = (item["position"]["partition"], item["position"]["offset"])
        ledger.attempts.append(
            Attempt(
                transaction_id,
                response.status_code,
                seconds,
                problem_type=problem.get("type"),
                retry_after=response.headers.get("retry-after"),
                content_type=content_type,
                position=position,
                started=started,
                token=token,
                batch=True,
            )
        )


async def produce_batches(
    client: httpx.AsyncClient,
    ledger: Ledger,
    stop: asyncio.Event,
    *,
    size: int,
    limit: int,
    pause: float,
) -> None:
    """Post batches of `size` new transactions one after another until `stop` or `limit`."""
    while not stop.is_set() and len(ledger.amounts) + size <= limit:
        ids = [ledger.new_transaction() for _ in range(size)]
        await post_batch_once(client, ledger, ids)
        await asyncio.sleep(pause)


async def produce(
    client: httpx.AsyncClient,
    ledger: Ledger,
    stop: asyncio.Event,
    *,
    limit: int,
    pause: float,
) -> None:
    """Post new transactions one after another until `stop` or `limit` sent in all."""
    while not stop.is_set() and len(ledger.amounts) < limit:
        await post_once(client, ledger, ledger.new_transaction())
        await asyncio.sleep(pause)


async def producers(
    client: httpx.AsyncClient,
    ledger: Ledger,
    stop: asyncio.Event,
    *,
    count: int,
    limit: int,
    pause: float,
) -> list[asyncio.Task[None]]:
    return [
        asyncio.create_task(produce(client, ledger, stop, limit=limit, pause=pause))
        for _ in range(count)
    ]


async def retry_until_acknowledged(
    client: httpx.AsyncClient, ledger: Ledger, ids: list[str], *, timeout: float
) -> None:
    """The client's side of the contract: retry with the same id until a 201."""
    deadline = time.monotonic() + timeout
    gate = asyncio.Semaphore(16)

    async def one(transaction_id: str) -> None:
        async with gate:
            while time.monotonic() < deadline:
                attempt = await post_once(client, ledger, transaction_id, retry=True)
                if attempt.status == 201:
                    return
                await asyncio.sleep(float(attempt.retry_after or 0.5))

    await asyncio.gather(*(one(t) for t in ids))
    missing = ledger.unacknowledged()
    assert not missing, f"{len(missing)} never acknowledged, e.g. {missing[:3]}"


async def wait_for_acks(ledger: Ledger, count: int, *, since: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while ledger.statuses(since=since)[201] < count:
        if time.monotonic() > deadline:
            msg = f"fewer than {count} acknowledgements within {timeout} s: {ledger.statuses()}"
            raise TimeoutError(msg)
        await asyncio.sleep(0.05)
