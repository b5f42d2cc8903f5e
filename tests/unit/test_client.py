"""The client library against the real command API in process (its in-memory publisher), behind
a transport that loses answers, refuses connections and answers 503 on demand; and the one
piece of the server's format the client re-implements, the merge of consistency tokens."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import (
    Accepted,
    ApiError,
    AsyncTxStats,
    GivenUp,
    Refused,
    RetryPolicy,
    Transaction,
    TxStats,
    merge_tokens,
)
from client.tokens import InvalidTokenError
from shared.consistency import InvalidConsistencyToken, decode_token, encode_token
from shared.offsets import highest_offsets
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.unit.command_kit import make_app, token

STAMP = "2026-11-26T11:59:00Z"
FAST = RetryPolicy(base=0.001, cap=0.01, give_up_after=5)


class Faults(httpx.AsyncBaseTransport):
    """Forwards to `inner`; the next requests can be made to fail: `unavailable` answers 503
    (Retry-After 0) without forwarding, `refused` raises ConnectError without forwarding,
    `lost` forwards and then raises ReadError (the server did the work, the answer is lost)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.plan: list[str] = []
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        fault = self.plan.pop(0) if self.plan else None
        if fault == "unavailable":
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"status": 503})
        if fault == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        response = await self.inner.handle_async_request(request)
        if fault == "lost":
            await response.aread()
            raise httpx.ReadError("connection reset", request=request)
        return response


@pytest.fixture
def publisher() -> InMemoryEventPublisher:
    return InMemoryEventPublisher()


@pytest.fixture
def faults(publisher: InMemoryEventPublisher) -> Faults:
    return Faults(httpx.ASGITransport(app=make_app(publisher)))


@pytest.fixture
async def client(faults: Faults) -> AsyncIterator[AsyncTxStats]:
    async with AsyncTxStats(token=token(), retry=FAST, command_transport=faults) as txstats:
        yield txstats


def transactions(count: int, **overrides: str) -> list[Transaction]:
    return [
        Transaction(amount=Decimal(f"{1 + i % 50}.{i % 100:02d}"), timestamp=STAMP, **overrides)
        for i in range(count)
    ]


async def test_record_many_reports_each_item_in_order_through_every_fault(
    client: AsyncTxStats, faults: Faults, publisher: InMemoryEventPublisher
) -> None:
    items = transactions(2500)
    faults.plan = ["unavailable", "lost", "refused", "unavailable"]
    outcomes = [o async for o in client.record_many(items, batch_size=1000, max_in_flight=2)]
    assert all(isinstance(o, Accepted) for o in outcomes)
    ids = [o.transaction_id for o in outcomes]
    assert len(set(ids)) == 2500  # each item got its id once, before its first attempt
    logged = Counter(event.transaction_id for event in publisher.events)
    assert set(logged) == set(ids)  # nothing the client did not send, nothing missing
    assert sum(logged.values()) > 2500  # the lost answer's batch landed twice: same ids
    amounts = {e.transaction_id: e.amount for e in publisher.events}
    assert [amounts[i] for i in ids] == [item.amount for item in items]  # input order


async def test_a_422_refuses_its_items_and_the_rest_of_the_batch_is_accepted(
    client: AsyncTxStats, faults: Faults
) -> None:
    items = transactions(10)
    items[3] = Transaction(amount="1.001", timestamp=STAMP)
    items[7] = Transaction(amount="abc", timestamp=STAMP)
    outcomes = [o async for o in client.record_many(items)]
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Accepted"] * 3 + ["Refused"] + ["Accepted"] * 3 + [
        "Refused",
        "Accepted",
    ] * 1 + ["Accepted"]
    refused = outcomes[3]
    assert isinstance(refused, Refused)
    assert refused.for_item
    assert [e.field for e in refused.errors] == ["amount"]
    assert faults.requests == 2  # the 422, then the batch without the refused items


async def test_a_4xx_is_never_retried(faults: Faults) -> None:
    async with AsyncTxStats(token="not-a-jwt", retry=FAST, command_transport=faults) as txstats:
        outcomes = [o async for o in txstats.record_many(transactions(5))]
        with pytest.raises(ApiError) as refused:
            await txstats.record(transactions(1)[0])
    assert {(type(o), o.status, o.for_item) for o in outcomes} == {(Refused, 401, False)}  # type: ignore[union-attr]
    assert refused.value.status == 401
    assert faults.requests == 2


async def test_retries_give_up_and_say_so(client: AsyncTxStats, faults: Faults) -> None:
    client.retry = RetryPolicy(base=0.001, cap=0.001, max_attempts=3)
    faults.plan = ["unavailable"] * 3
    [outcome] = [o async for o in client.record_many(transactions(1))]
    assert isinstance(outcome, GivenUp)
    assert "503" in outcome.reason
    assert faults.requests == 3


async def test_a_repeated_id_waits_for_the_earlier_one(
    client: AsyncTxStats, publisher: InMemoryEventPublisher
) -> None:
    items = [
        Transaction(amount="1.00", timestamp=STAMP, transaction_id="order-1"),
        *transactions(5),
        Transaction(amount="2.00", timestamp=STAMP, transaction_id="order-1"),
    ]
    outcomes = [o async for o in client.record_many(items, max_in_flight=4)]
    assert all(isinstance(o, Accepted) for o in outcomes)
    first = next(e for e in publisher.events if e.transaction_id == "order-1")
    assert first.amount == Decimal("1.00")  # the log holds the file's first occurrence first


async def test_a_float_amount_is_a_programming_error(client: AsyncTxStats) -> None:
    with pytest.raises(TypeError):
        await client.record(Transaction(amount=12.34, timestamp=STAMP))  # type: ignore[arg-type]


def test_the_sync_client_is_the_same_client(publisher: InMemoryEventPublisher) -> None:
    transport = httpx.ASGITransport(app=make_app(publisher))
    with TxStats(token=token(), retry=FAST, command_transport=transport) as txstats:
        receipt = txstats.record(Transaction(amount="5.00", timestamp=STAMP, transaction_id="a"))
        outcomes = list(txstats.record_many(transactions(1500)))
    assert receipt.transaction_id == "a"
    assert len(outcomes) == 1500
    assert len(publisher.events) == 1501


positions = st.dictionaries(
    st.integers(0, 999_999), st.integers(0, 2**63 - 1), min_size=1, max_size=8
)


@given(st.lists(positions, min_size=1, max_size=6))
def test_merged_tokens_are_the_servers_highest_offsets(written: list[dict[int, int]]) -> None:
    tokens = [encode_token(each) for each in written]
    merged = merge_tokens(tokens)
    pairs = [pair for each in written for pair in each.items()]
    assert merged == encode_token(highest_offsets(pairs))
    assert merged is not None
    assert decode_token(merged) == highest_offsets(pairs)


@pytest.mark.parametrize(
    "text",
    ["", "v1", "v1.", "v2.0-1", "v1.0-1.", "v1.a-1", "v1.0-1\n", "v1.\u0663-1", "v1.1234567-1"],
)
def test_the_client_refuses_what_the_server_refuses(text: str) -> None:
    with pytest.raises(InvalidConsistencyToken):
        decode_token(text)
    with pytest.raises(InvalidTokenError):
        merge_tokens([text])
