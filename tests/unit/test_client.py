"""The client library against the real command API in process (its in-memory publisher), behind
a transport that loses answers, refuses connections and answers 503 on demand; and the one
piece of the server's format the client re-implements, the merge of consistency tokens."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import (
    Accepted,
    ApiError,
    AsyncTxStats,
    GivenUp,
    NotCounted,
    Refused,
    RetryPolicy,
    Transaction,
    TxStats,
    UnavailableError,
    merge_tokens,
)
from client.tokens import InvalidTokenError
from query_api.main import create_app
from query_api.ports import TransactionRecord
from shared.auth import SCOPE_TRANSACTIONS_READ, mint_token
from shared.consistency import InvalidConsistencyToken, decode_token, encode_token
from shared.offsets import highest_offsets
from shared.projection import Occurrence
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.doubles.memory_reader import InMemoryProjectionReader
from tests.unit.command_kit import make_app, token
from tests.unit.test_query_http import JWT as QUERY_JWT
from tests.unit.test_query_http import NOW as QUERY_NOW
from tests.unit.test_query_http import config as query_config

STAMP = "2026-11-26T11:59:00Z"
AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
FAST = RetryPolicy(base=0.001, cap=0.01, give_up_after=5)


class Faults(httpx.AsyncBaseTransport):
    """Forwards to `inner`; the next requests can be made to fail: `unavailable` answers 503
    (Retry-After 0) without forwarding, `refused` raises ConnectError without forwarding,
    `lost` forwards and then raises ReadError (the server did the work, the answer is lost),
    `after-<status>` forwards and then answers `status` instead (the work done, then a 5xx)."""

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
        if fault is not None and fault.startswith("after-"):
            await response.aread()
            return httpx.Response(int(fault.removeprefix("after-")), text="upstream failed")
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


@pytest.mark.parametrize("settings", [{"unknown": 1}, {"command_url": "http://[::1"}])
def test_a_sync_client_that_cannot_be_built_leaves_no_thread(settings: dict[str, object]) -> None:
    before = set(threading.enumerate())
    with pytest.raises((TypeError, httpx.InvalidURL)):
        TxStats(**settings)
    assert set(threading.enumerate()) == before


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


ODD_IDS = ["a:b", "..", ".", "a#b", "a/b", "a?b", "x.y", "a b", "a%2Fb"]


async def test_an_id_is_one_path_segment_whatever_it_holds() -> None:
    paths: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(503)

    once = RetryPolicy(max_attempts=1)
    transport = httpx.MockTransport(answer)
    async with AsyncTxStats(retry=once, query_transport=transport) as txstats:
        for transaction_id in ODD_IDS:
            with pytest.raises(UnavailableError):
                await txstats.transaction(transaction_id)
    segments = [path.removeprefix(b"/transactions/").decode() for path in paths]
    assert segments == [
        "a%3Ab",
        "%2E%2E",
        "%2E",
        "a%23b",
        "a%2Fb",
        "a%3Fb",
        "x.y",
        "a%20b",
        "a%252Fb",
    ]
    assert [unquote(segment) for segment in segments] == ODD_IDS


async def test_the_query_api_finds_the_transaction_of_an_odd_id() -> None:
    reader = InMemoryProjectionReader()
    reader.set_log_end(0, 1)
    routable = [each for each in ODD_IDS if "/" not in unquote(each)]  # a route holds no '/'
    for offset, transaction_id in enumerate(routable):
        counted = Occurrence(0, offset, Decimal(f"{offset + 1}.00"), AT, AT, "shop-a")
        reader.put_transaction(TransactionRecord(transaction_id, counted, 0, 0, ()))
    app = create_app(query_config(), reader=reader, clock=lambda: QUERY_NOW)
    own = mint_token(QUERY_JWT, subject="shop-a", scopes=[SCOPE_TRANSACTIONS_READ])
    async with (
        app.router.lifespan_context(app),
        AsyncTxStats(token=own, query_transport=httpx.ASGITransport(app=app)) as txstats,
    ):
        found = [await txstats.transaction(transaction_id) for transaction_id in routable]
        missing = await txstats.transaction("..a")
    assert [(each.transaction_id, getattr(each, "amount", None)) for each in found] == [
        (transaction_id, Decimal(f"{offset + 1}.00"))
        for offset, transaction_id in enumerate(routable)
    ]
    assert isinstance(missing, NotCounted)


@pytest.mark.parametrize(
    ("amount", "sent"),
    [
        (Decimal("1E+3"), "1000"),
        (Decimal("1.5E+2"), "150"),
        (Decimal("12.30"), "12.30"),
        (Decimal("1E-2"), "0.01"),
        (Decimal("0E-7"), "0.0000000"),
        ("7.5", "7.5"),
    ],
)
async def test_an_amount_is_sent_in_fixed_point(
    client: AsyncTxStats, publisher: InMemoryEventPublisher, amount: Decimal | str, sent: str
) -> None:
    assert client.ids.wire(Transaction(amount=amount, timestamp=STAMP)).amount == sent
    if Decimal(sent) > 0:
        await client.record(Transaction(amount=amount, timestamp=STAMP))
        assert publisher.events[-1].amount == Decimal(sent)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 507])
async def test_a_5xx_is_not_confirmed_retried_then_given_up(
    faults: Faults, publisher: InMemoryEventPublisher, status: int
) -> None:
    """A 5xx may come after the events reached the log: never a refusal. Here the first
    answer is a 5xx that comes after the publish, the retry is answered, and the server
    holds the ids of the first attempt (counted once)."""
    faults.plan = [f"after-{status}"]
    async with AsyncTxStats(token=token(), retry=FAST, command_transport=faults) as txstats:
        outcomes = [o async for o in txstats.record_many(transactions(3))]
        assert all(isinstance(o, Accepted) for o in outcomes)
        assert faults.requests == 2
        assert len({e.transaction_id for e in publisher.events}) == 3
        txstats.retry = RetryPolicy(base=0.001, cap=0.001, max_attempts=3)
        faults.plan = [f"after-{status}"] * 3
        [given_up] = [o async for o in txstats.record_many(transactions(1))]
    assert isinstance(given_up, GivenUp)
    assert given_up.reason.startswith(str(status))
    assert faults.requests == 5
