"""`GET /transactions/{id}` over HTTP (ASGI) with the in-memory reader: always a JWT, a
producer's ids are its own (another producer is named only with `transactions:read:any`), 404
(never 403) for anything not visible, `as_of` on both answers, read-your-writes with a
consistency token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from query_api.ports import ProjectionPosition, TransactionRecord
from shared.auth import (
    SCOPE_READ,
    SCOPE_TRANSACTIONS_READ,
    SCOPE_TRANSACTIONS_READ_ANY,
    mint_token,
)
from shared.projection import Occurrence
from tests.doubles.memory_reader import InMemoryProjectionReader
from tests.unit.test_query_http import JWT, NOW, assert_problem, serve

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def occurrence(offset: int, amount: str, producer: str) -> Occurrence:
    return Occurrence(0, offset, Decimal(amount), AT, AT, producer)


def bearer(subject: str, *scopes: str) -> dict[str, str]:
    token = mint_token(JWT, subject=subject, scopes=list(scopes), ttl_seconds=86_400)
    return {"Authorization": "Bearer " + token}  # minted at import: a day outlasts any run


@pytest.fixture
def reader() -> InMemoryProjectionReader:
    reader = InMemoryProjectionReader()
    reader.record(partition=0, amount=Decimal("10.00"), event_second=int(NOW))
    reader.set_log_end(0, 3)
    reader.put_transaction(
        TransactionRecord(
            "x",
            occurrence(0, "10.00", "shop-a"),
            duplicates=2,
            conflict_count=1,
            conflicts=(occurrence(1, "99.99", "shop-a"),),
        )
    )
    return reader


OWN = bearer("shop-a", SCOPE_TRANSACTIONS_READ)


async def test_counted_shows_the_occurrence_duplicates_and_conflicts(
    reader: InMemoryProjectionReader,
) -> None:
    async with serve(reader) as (client, _):
        response = await client.get("/transactions/x", headers=OWN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "counted"
    assert (body["amount"], body["partition"], body["offset"], body["producer"]) == (
        "10.00",
        0,
        0,
        "shop-a",
    )
    assert body["occurred_at"] == body["recorded_at"] == "2026-11-26T12:00:00Z"
    assert (body["duplicates"], body["conflicts"]) == (2, 1)
    assert body["conflicting"] == [
        {
            "amount": "99.99",
            "occurred_at": "2026-11-26T12:00:00Z",
            "partition": 0,
            "offset": 1,
            "recorded_at": "2026-11-26T12:00:00Z",
            "producer": "shop-a",
        }
    ]
    assert body["as_of"]["offsets"] == {"0": 1}
    assert body["as_of"]["lag"] == {"0": 2}


async def test_not_found_is_404_with_as_of(reader: InMemoryProjectionReader) -> None:
    async with serve(reader) as (client, _):
        response = await client.get("/transactions/nope", headers=OWN)
    body = assert_problem(response, 404)
    assert (body["transaction_id"], body["state"]) == ("nope", "not_found")
    assert body["as_of"]["version"] == 1
    assert body["as_of"]["offsets"] == {"0": 1}


async def test_another_producers_transaction_is_the_same_404(
    reader: InMemoryProjectionReader,
) -> None:
    async with serve(reader) as (client, _):
        theirs = await client.get(
            "/transactions/x", headers=bearer("shop-b", SCOPE_TRANSACTIONS_READ)
        )
        nothing = await client.get(
            "/transactions/y", headers=bearer("shop-b", SCOPE_TRANSACTIONS_READ)
        )
        anyone = await client.get(
            "/transactions/x",
            params={"producer": "shop-a"},
            headers=bearer("auditor", SCOPE_TRANSACTIONS_READ, SCOPE_TRANSACTIONS_READ_ANY),
        )
    body = assert_problem(theirs, 404)
    other = assert_problem(nothing, 404)
    assert {k: v for k, v in body.items() if k not in ("detail", "transaction_id")} == {
        k: v for k, v in other.items() if k not in ("detail", "transaction_id")
    }
    assert anyone.status_code == 200
    assert anyone.json()["amount"] == "10.00"


async def test_an_id_stored_without_payload_is_visible_to_any_readers_only(
    reader: InMemoryProjectionReader,
) -> None:
    reader.put_transaction(TransactionRecord("old", None, duplicates=1))
    async with serve(reader) as (client, _):
        own = await client.get("/transactions/old", headers=OWN)
        anyone = await client.get(
            "/transactions/old",
            headers=bearer("ops", SCOPE_TRANSACTIONS_READ, SCOPE_TRANSACTIONS_READ_ANY),
        )
    assert_problem(own, 404)
    assert anyone.status_code == 200
    assert (anyone.json()["amount"], anyone.json()["duplicates"]) == (None, 1)


@pytest.mark.parametrize("require_auth", [False, True], ids=["stats-open", "stats-protected"])
async def test_always_behind_a_jwt_with_the_scope(
    reader: InMemoryProjectionReader, *, require_auth: bool
) -> None:
    async with serve(reader, stats_require_auth=require_auth) as (client, _):
        anonymous = await client.get("/transactions/x")
        stats_only = await client.get("/transactions/x", headers=bearer("shop-a", SCOPE_READ))
        garbage = await client.get("/transactions/x", headers={"Authorization": "Bearer nope"})
    assert_problem(anonymous, 401)
    assert_problem(stats_only, 403)  # says nothing about the id: the scope is missing
    assert_problem(garbage, 401)


async def test_consistency_token_waits_for_the_projection(
    reader: InMemoryProjectionReader,
) -> None:
    async with serve(reader) as (client, board):
        request = asyncio.create_task(
            client.get(
                "/transactions/z",
                params={"consistency_token": "v1.0-1", "wait_ms": "5000"},
                headers=OWN,
            )
        )
        async with asyncio.timeout(2):
            while board.waiting == 0:
                await asyncio.sleep(0)
        reader.record(partition=0, amount=Decimal("1.00"), event_second=int(NOW))
        reader.put_transaction(TransactionRecord("z", occurrence(1, "1.00", "shop-a")))
        board.observe(ProjectionPosition(1, {0: 2}))
        response = await asyncio.wait_for(request, 2)
    assert response.status_code == 200, response.text
    assert response.json()["as_of"]["offsets"] == {"0": 2}


async def test_consistency_token_not_reached_and_malformed(
    reader: InMemoryProjectionReader,
) -> None:
    async with serve(reader) as (client, _):
        late = await client.get(
            "/transactions/x", params={"consistency_token": "v1.0-9", "wait_ms": 0}, headers=OWN
        )
        malformed = await client.get(
            "/transactions/x", params={"consistency_token": "nope"}, headers=OWN
        )
    assert_problem(late, 503)
    body = assert_problem(malformed, 422)
    assert [(e["location"], e["field"]) for e in body["errors"]] == [("query", "consistency_token")]


async def test_store_down_is_503(reader: InMemoryProjectionReader) -> None:
    reader.unavailable = True
    async with serve(reader) as (client, _):
        response: httpx.Response = await client.get("/transactions/x", headers=OWN)
    assert_problem(response, 503)


async def test_a_producers_ids_are_its_own(reader: InMemoryProjectionReader) -> None:
    reader.put_transaction(TransactionRecord("x", occurrence(2, "99.99", "shop-b")))
    async with serve(reader) as (client, _):
        mine = await client.get("/transactions/x", headers=OWN)
        theirs = await client.get(
            "/transactions/x", headers=bearer("shop-b", SCOPE_TRANSACTIONS_READ)
        )
        nobody = await client.get(
            "/transactions/x", headers=bearer("shop-c", SCOPE_TRANSACTIONS_READ)
        )
    assert (mine.status_code, mine.json()["amount"], mine.json()["producer"]) == (
        200,
        "10.00",
        "shop-a",
    )
    assert (theirs.status_code, theirs.json()["amount"], theirs.json()["producer"]) == (
        200,
        "99.99",
        "shop-b",
    )
    assert theirs.json()["conflicting"] == []  # shop-a's conflicts are shop-a's
    assert_problem(nobody, 404)


async def test_an_any_reader_names_the_producer_and_gets_its_own_without(
    reader: InMemoryProjectionReader,
) -> None:
    auditor = bearer("auditor", SCOPE_TRANSACTIONS_READ, SCOPE_TRANSACTIONS_READ_ANY)
    reader.put_transaction(TransactionRecord("x", occurrence(2, "99.99", "shop-b")))
    async with serve(reader) as (client, _):
        named = await client.get("/transactions/x", params={"producer": "shop-b"}, headers=auditor)
        unnamed = await client.get("/transactions/x", headers=auditor)
    assert (named.status_code, named.json()["amount"]) == (200, "99.99")
    assert_problem(unnamed, 404)  # the auditor posted no "x"


async def test_only_an_any_reader_may_name_another_producer(
    reader: InMemoryProjectionReader,
) -> None:
    async with serve(reader) as (client, _):
        other = await client.get("/transactions/x", params={"producer": "shop-b"}, headers=OWN)
        self_named = await client.get("/transactions/x", params={"producer": "shop-a"}, headers=OWN)
    body = assert_problem(other, 403)
    assert "transactions:read:any" in body["detail"]
    assert "x" not in body.get("transaction_id", "")
    assert self_named.status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/transactions/a%00b", {}, "transaction_id"),
        ("/transactions/a%0Ab", {}, "transaction_id"),
        ("/transactions/a%C2%85b", {}, "transaction_id"),
        ("/transactions/" + "x" * 256, {}, "transaction_id"),
        ("/transactions/x", {"producer": "a\x00b"}, "producer"),
        ("/transactions/x", {"producer": "p" * 256}, "producer"),
    ],
    ids=["NUL", "newline", "C1", "too-long", "producer-NUL", "producer-too-long"],
)
async def test_an_id_or_producer_the_log_cannot_hold_is_a_422(
    reader: InMemoryProjectionReader, path: str, params: dict[str, str], field: str
) -> None:
    async with serve(reader) as (client, _):
        response = await client.get(path, params=params, headers=OWN)
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == [field]
