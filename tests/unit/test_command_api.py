"""The command API over HTTP (in-process, in-memory log): responses, batch, errors, 503,
media types, size limit, request ids, readiness, metrics and OpenAPI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from command_api.idempotency import IdempotencyKeyError, parse_idempotency_key
from command_api.models import (
    BatchRecordedResponse,
    TransactionRecordedResponse,
    TransactionRequest,
    ValidationContext,
)
from command_api.ports import Position, PublishFailedError
from shared.auth import SCOPE_READ
from shared.consistency import decode_token
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.unit.command_kit import (
    JSON,
    NOW,
    bearer,
    body,
    client_for,
    make_app,
    token,
)


def item(index: int, **fields: Any) -> dict[str, Any]:
    return {"amount": f"{index + 1}.25", "timestamp": "2026-11-26T11:00:00Z", **fields}


def batch(*items: dict[str, Any]) -> bytes:
    return json.dumps({"transactions": list(items)}).encode()


@pytest.fixture
def log() -> InMemoryEventPublisher:
    return InMemoryEventPublisher(partitions=6)


@pytest.fixture
async def client(log: InMemoryEventPublisher) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(log)) as client:
        yield client


# --- POST /transactions


async def test_a_transaction_is_appended_and_acknowledged(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post(
        "/transactions",
        content=body(amount=0.1, transaction_id="order-7"),
        headers=bearer(token(subject="shop-42")),
    )

    assert response.status_code == 201, response.text
    answer = response.json()
    [(position, event)] = log.appended
    assert answer == {
        "transaction_id": "order-7",
        "event_id": str(event.event_id),
        "position": {"partition": position.partition, "offset": position.offset},
        "consistency_token": f"v1.{position.partition}-{position.offset}",
    }
    assert decode_token(answer["consistency_token"]) == {position.partition: position.offset}
    assert event.key == b"order-7"
    assert str(event.amount) == "0.10"
    assert event.producer == "shop-42"
    assert event.recorded_at == NOW
    assert event.occurred_at.isoformat() == "2026-11-26T11:59:00+00:00"


async def test_a_transaction_id_is_generated_when_absent(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    first = await client.post("/transactions", content=body(), headers=bearer())
    second = await client.post("/transactions", content=body(), headers=bearer())

    ids = [first.json()["transaction_id"], second.json()["transaction_id"]]
    assert len(set(ids)) == 2
    assert [event.transaction_id for event in log.events] == ids


async def test_the_same_transaction_id_lands_on_the_same_partition(
    client: httpx.AsyncClient,
) -> None:
    answers = [
        (
            await client.post("/transactions", content=body(transaction_id="t-1"), headers=bearer())
        ).json()["position"]["partition"]
        for _ in range(3)
    ]
    assert len(set(answers)) == 1


# --- POST /transactions/batch


async def test_a_batch_is_appended_whole_in_order(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    items = [item(i, transaction_id=f"b-{i}") for i in range(40)]
    response = await client.post("/transactions/batch", content=batch(*items), headers=bearer())

    assert response.status_code == 201, response.text
    answer = response.json()
    assert [entry["transaction_id"] for entry in answer["transactions"]] == [
        f"b-{i}" for i in range(40)
    ]
    assert [Position(**entry["position"]) for entry in answer["transactions"]] == [
        position for position, _ in log.appended
    ]
    assert [str(event.amount) for event in log.events] == [f"{i + 1}.25" for i in range(40)]
    highest: dict[int, int] = {}
    for position, _ in log.appended:
        highest[position.partition] = max(highest.get(position.partition, -1), position.offset)
    assert decode_token(answer["consistency_token"]) == highest
    assert len({event.event_id for event in log.events}) == 40


@pytest.mark.parametrize(
    ("path", "content", "model"),
    [
        ("/transactions", body(transaction_id="m-1"), TransactionRecordedResponse),
        (
            "/transactions/batch",
            batch(item(0), item(1, transaction_id="m-2")),
            BatchRecordedResponse,
        ),
    ],
)
async def test_a_201_body_is_exactly_its_documented_model(
    client: httpx.AsyncClient, path: str, content: bytes, model: type[BaseModel]
) -> None:
    """The bodies are encoded without the models: they must still be exactly the schema."""
    response = await client.post(path, content=content, headers=bearer())
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert model.model_validate(answer).model_dump(mode="json") == answer


async def test_batch_items_without_ids_get_generated_ones(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post(
        "/transactions/batch",
        content=batch(item(0), item(1, transaction_id="mine")),
        headers=bearer(),
    )
    generated, own = response.json()["transactions"]
    assert own["transaction_id"] == "mine"
    assert generated["transaction_id"] == log.events[0].transaction_id


async def test_one_bad_item_refuses_the_whole_batch(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    items = [item(i) for i in range(10)]
    items[7] = item(7, amount="12.345")
    response = await client.post("/transactions/batch", content=batch(*items), headers=bearer())

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "transactions.7.amount"
    assert error["code"] == "decimal_max_places"
    assert log.events == []


async def test_a_batch_reports_every_bad_item(client: httpx.AsyncClient) -> None:
    items = [item(i) for i in range(5)]
    items[1] = item(1, timestamp="2026-11-26T11:00:00")
    items[3] = item(3, amount=0, note="x")
    response = await client.post("/transactions/batch", content=batch(*items), headers=bearer())

    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"transactions.1.timestamp", "transactions.3.amount", "transactions.3.note"}


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"transactions": []}, "transactions", "too_short"),
        ({"transactions": [item(0)] * 1001}, "transactions", "too_long"),
        ({"transactions": item(0)}, "transactions", "list_type"),
        ({}, "transactions", "missing"),
        ({"transactions": [item(0)], "extra": 1}, "extra", "extra_forbidden"),
        (
            {"transactions": [item(0, transaction_id="x"), item(1), item(2, transaction_id="x")]},
            "transactions",
            "duplicate_transaction_id",
        ),
    ],
    ids=["empty", "1001 items", "not a list", "missing", "unknown field", "duplicate ids"],
)
async def test_batch_shape_rules(
    client: httpx.AsyncClient,
    log: InMemoryEventPublisher,
    payload: dict[str, Any],
    field: str,
    code: str,
) -> None:
    response = await client.post(
        "/transactions/batch", content=json.dumps(payload), headers=bearer()
    )
    assert response.status_code == 422
    assert (field, code) in {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert log.events == []


async def test_a_batch_of_1000_is_accepted(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post(
        "/transactions/batch", content=batch(*[item(i % 50) for i in range(1000)]), headers=bearer()
    )
    assert response.status_code == 201
    assert len(response.json()["transactions"]) == 1000
    assert len(log.events) == 1000


# --- the event log failing


@pytest.mark.parametrize("path", ["/transactions", "/transactions/batch"])
async def test_a_failed_publish_is_a_503_with_retry_after(
    client: httpx.AsyncClient, log: InMemoryEventPublisher, path: str
) -> None:
    log.failure = PublishFailedError("timeout", "The event log did not confirm within 5 s.")
    content = body() if path == "/transactions" else batch(item(0), item(1))

    response = await client.post(path, content=content, headers=bearer())

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/event-log-unavailable")
    assert problem["status"] == 503
    assert log.events == []


async def test_an_unexpected_error_is_a_500_without_internals(
    log: InMemoryEventPublisher,
) -> None:
    class Exploding(InMemoryEventPublisher):
        async def publish(self, events: Any) -> list[Position]:
            raise RuntimeError("connection string postgres://secret@db")

    async with client_for(make_app(Exploding())) as client:
        response = await client.post(
            "/transactions", content=body(), headers={**bearer(), "x-request-id": "req-500"}
        )

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-500"
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert response.json()["detail"] == "An unexpected error occurred."


# --- HTTP edges: auth order, media type, size, method, request id


async def test_authentication_comes_before_reading_the_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/transactions", content=b"{not json", headers=JSON)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_token_without_the_write_scope_is_forbidden(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post(
        "/transactions", content=body(), headers=bearer(token(scopes=SCOPE_READ))
    )
    assert response.status_code == 403
    assert log.events == []


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, 415),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=latin-1", 415),
        ("application/merge-patch+json", 415),
        ("application/json", 201),
        ("application/json; charset=UTF-8", 201),
        ("Application/JSON", 201),
    ],
)
async def test_only_json_is_accepted(
    client: httpx.AsyncClient, content_type: str | None, status: int
) -> None:
    headers = {"authorization": f"Bearer {token()}"}
    if content_type is not None:
        headers["content-type"] = content_type
    response = await client.post("/transactions", content=body(), headers=headers)
    assert response.status_code == status, response.text
    if status == 415:
        assert response.headers["content-type"] == "application/problem+json"


async def test_malformed_json_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/transactions", content=b'{"amount": 1,', headers=bearer())
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Malformed JSON"


async def test_invalid_utf8_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/transactions", content=b'{"amount": "\xff"}', headers=bearer())
    assert response.status_code == 400


async def test_deeply_nested_json_is_a_400(client: httpx.AsyncClient) -> None:
    content = b"[" * 200_000 + b"]" * 200_000
    response = await client.post("/transactions", content=content, headers=bearer())
    assert response.status_code == 400
    assert response.json()["detail"] == "The request body is nested too deeply."


@pytest.mark.parametrize("path", ["/transactions", "/transactions/batch"])
async def test_an_amount_nested_a_thousand_levels_deep_is_a_400(
    client: httpx.AsyncClient, path: str
) -> None:
    """~2 KB: under every size limit, but deeper than a decoder's recursion allows."""
    amount = "[" * 1000 + "]" * 1000
    item = f'{{"amount": {amount}, "timestamp": "2026-11-26T11:00:00Z"}}'
    content = (item if path == "/transactions" else f'{{"transactions": [{item}]}}').encode()
    response = await client.post(path, content=content, headers=bearer())
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "The request body is nested too deeply."


async def test_error_messages_name_the_limits_plainly(client: httpx.AsyncClient) -> None:
    response = await client.post("/transactions", content=body(amount=2e12), headers=bearer())
    [error] = response.json()["errors"]
    assert error["message"] == "Input should be less than or equal to 1000000000000"


async def test_a_body_over_1_mib_is_refused_by_its_length(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    oversized = b'{"amount": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.post("/transactions", content=oversized, headers=bearer())
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert log.events == []


async def test_a_streamed_body_over_1_mib_is_refused_without_reading_it_whole(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield b" " * 65536

    response = await client.post("/transactions", content=chunks(), headers=bearer())
    assert response.status_code == 413
    assert sent < 64  # refused as soon as the limit was crossed


async def test_a_batch_just_under_1_mib_is_read(client: httpx.AsyncClient) -> None:
    content = batch(item(0))
    padded = content[:-1] + b" " * (1024 * 1024 - len(content)) + b"}"
    response = await client.post("/transactions/batch", content=padded, headers=bearer())
    assert response.status_code == 201


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/transactions")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_request_id_is_echoed_on_success_and_error(client: httpx.AsyncClient) -> None:
    ok = await client.post(
        "/transactions", content=body(), headers={**bearer(), "x-request-id": "a1"}
    )
    bad = await client.post(
        "/transactions", content=b"{", headers={**bearer(), "x-request-id": "b2"}
    )
    minted = await client.post("/transactions", content=body(), headers=bearer())
    assert ok.headers["x-request-id"] == "a1"
    assert bad.headers["x-request-id"] == "b2"
    assert len(minted.headers["x-request-id"]) == 32


# --- operations


async def test_health_and_readiness(client: httpx.AsyncClient, log: InMemoryEventPublisher) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).status_code == 200
    log.ready = False
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["errors"] == [{"dependency": "kafka", "error": "EventLogNotReadyError"}]


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def test_metrics_count_accepted_rejected_and_failed(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    await client.post("/transactions", content=body(), headers=bearer())
    await client.post("/transactions/batch", content=batch(item(0), item(1)), headers=bearer())
    await client.post("/transactions", content=body(amount=-1), headers=bearer())
    await client.post("/transactions", content=body(), headers=JSON)
    await client.post("/transactions", content=body(), headers={"authorization": "Bearer x"})
    await client.post("/transactions", content=b"{", headers=bearer())
    log.failure = PublishFailedError("not_connected", "down")
    await client.post("/transactions", content=body(), headers=bearer())

    text = (await client.get("/metrics")).text
    assert _sample(text, "transactions_accepted_total") == 3
    assert _sample(text, 'transaction_requests_rejected_total{reason="invalid"}') == 1
    assert _sample(text, 'transaction_requests_rejected_total{reason="unauthenticated"}') == 2
    assert _sample(text, 'transaction_requests_rejected_total{reason="malformed_json"}') == 1
    assert _sample(text, 'event_publish_failures_total{reason="not_connected"}') == 1
    assert _sample(text, "event_publish_duration_seconds_count") == 2
    assert 'http_request_duration_seconds_count{method="POST",route="/transactions"' in text


# --- OpenAPI


async def test_openapi_documents_auth_bodies_and_problems(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, model in [
        ("/transactions", "TransactionRequest"),
        ("/transactions/batch", "TransactionBatchRequest"),
    ]:
        operation = spec["paths"][path]["post"]
        assert operation["security"] == [{"HTTPBearer": []}]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}"
        assert model in schemas
        for status in ("400", "401", "403", "413", "415", "422", "503"):
            content = operation["responses"][status]["content"]
            assert content["application/problem+json"]["schema"]["$ref"].endswith("/ProblemDetails")
        assert "201" in operation["responses"]
    assert "ProblemDetails" in schemas
    assert "FieldErrorDetail" in schemas
    items = schemas["TransactionBatchRequest"]["properties"]["transactions"]["items"]
    assert items == {"$ref": "#/components/schemas/TransactionRequest"}
    assert set(schemas["TransactionRequest"]["properties"]) == {
        "amount",
        "timestamp",
        "transaction_id",
    }


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


# --- Idempotency-Key header


def keyed(key: str) -> dict[str, str]:
    return {**bearer(), "Idempotency-Key": key}


async def test_the_idempotency_key_header_is_the_id_when_the_body_has_none(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post("/transactions", content=body(), headers=keyed('"order-9"'))
    assert response.status_code == 201, response.text
    assert response.json()["transaction_id"] == "order-9"
    assert [event.transaction_id for event in log.events] == ["order-9"]


async def test_an_idempotency_key_equal_to_the_body_id_is_accepted(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post(
        "/transactions", content=body(transaction_id="a:1"), headers=keyed(' "a:1" ')
    )
    assert response.status_code == 201, response.text
    assert [event.transaction_id for event in log.events] == ["a:1"]


async def test_an_idempotency_key_different_from_the_body_id_is_422(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post(
        "/transactions", content=body(transaction_id="a-1"), headers=keyed('"a-2"')
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert (error["field"], error["location"], error["code"]) == (
        "Idempotency-Key",
        "header",
        "idempotency_key_mismatch",
    )
    assert log.events == []


@pytest.mark.parametrize(
    "value",
    ["order-9", '""', '"a b"', '"' + "x" * 65 + '"', '"a\\"b"', '"a";p=1', '"caf\u00e9"'],
    ids=["token", "empty", "space", "too-long", "escape", "parameters", "non-ascii"],
)
async def test_a_malformed_idempotency_key_is_422_with_the_body_errors(
    client: httpx.AsyncClient, log: InMemoryEventPublisher, value: str
) -> None:  # header bytes as sent (UTF-8 for the non-ASCII case)
    response = await client.post(
        "/transactions",
        content=body(amount=-1),
        headers=[(k.encode(), v.encode()) for k, v in bearer().items()]
        + [(b"Idempotency-Key", value.encode())],
    )
    assert response.status_code == 422
    fields = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert ("Idempotency-Key", "idempotency_key_invalid") in fields
    assert any(field == "amount" for field, _ in fields)
    assert log.events == []


POSTED_IDS = st.one_of(
    st.text(alphabet="ab9._:- \n\u00e9", max_size=70),
    st.sampled_from(["a" * 64, "a" * 65, "a\n", "order-1"]),
)


@given(POSTED_IDS)
def test_the_header_takes_exactly_the_ids_the_body_takes(posted: str) -> None:
    try:
        TransactionRequest.model_validate(
            {"amount": 1, "timestamp": "2026-11-26T11:00:00Z", "transaction_id": posted},
            context=ValidationContext(now=NOW, max_clock_skew=timedelta(seconds=5)),
        )
        by_body = True
    except ValidationError:
        by_body = False
    try:
        by_header = parse_idempotency_key(f'"{posted}"') == posted
    except IdempotencyKeyError:
        by_header = False
    assert by_header is by_body


async def test_a_batch_refuses_an_idempotency_key(
    client: httpx.AsyncClient, log: InMemoryEventPublisher
) -> None:
    response = await client.post(
        "/transactions/batch", content=batch(item(0)), headers=keyed('"b"')
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "idempotency_key_not_allowed"
    assert log.events == []


async def test_the_idempotency_key_header_is_in_the_openapi(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    parameters = spec["paths"]["/transactions"]["post"]["parameters"]
    [header] = [p for p in parameters if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert "RFC 8941" in header["description"]
