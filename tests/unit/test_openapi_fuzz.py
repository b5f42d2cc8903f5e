"""schemathesis against both OpenAPI specs, every operation, with and without a valid token.

In process: each app is served over ASGI with its in-memory fake (the command API with an
`InMemoryEventPublisher`, the query API with an `InMemoryProjectionReader`), so hundreds of
generated requests take seconds. The contract checked on every response: no 5xx, every error
is `application/problem+json` with a matching `status`, the answer's status, content type and
body conform to the spec (error bodies to `ProblemDetails`), and schema-invalid requests are
refused (negative data). Each test runs its own generation and checks its own outcome (for
the main operations: that requests were accepted as well as refused), so none depends on
another having run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from command_api.main import create_app as create_command_app
from query_api.config import QueryConfig
from query_api.main import create_app as create_query_app
from shared.auth import SCOPE_READ, SCOPE_WRITE
from shared.errors import PROBLEM_JSON
from shared.settings import DatabaseSettings, LogSettings, QuerySettings
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.doubles.memory_reader import InMemoryProjectionReader
from tests.openapi_rules import is_promised_consistency_timeout
from tests.unit.command_kit import command_config, jwt_settings, token

MAX_EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
]


def command_app() -> FastAPI:
    return create_command_app(command_config(), publisher=InMemoryEventPublisher())


def query_app(*, require_auth: bool) -> FastAPI:
    reader = InMemoryProjectionReader()
    reader.record(partition=0, amount=Decimal("10.00"), event_second=1_700_000_000)
    reader.record(partition=3, amount=Decimal("0.01"), event_second=1_700_000_100)
    config = QueryConfig(
        database=DatabaseSettings(),
        jwt=jwt_settings(),
        query=QuerySettings(stats_require_auth=require_auth, default_wait_ms=0),
        log=LogSettings(),
    )
    return create_query_app(config, reader=reader, clock=lambda: 1_700_000_120.0)


APPS: dict[str, Callable[[], FastAPI]] = {
    "command": command_app,
    "open-query": lambda: query_app(require_auth=False),
    "protected-query": lambda: query_app(require_auth=True),
}
TOKENS = {"command": f"{SCOPE_WRITE} {SCOPE_READ}", "open-query": SCOPE_READ}
TOKENS["protected-query"] = SCOPE_READ


def load(app: FastAPI) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The token is ours (valid, or none at all): schemathesis does not generate one, so a
    # "negative" case is never just a missing header that the test then fills in. Unknown
    # query parameters are ignored, as HTTP APIs commonly do: not a schema violation.
    schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=True)
    # A 200 from GET /stats/stream never ends (Server-Sent Events): its own tests cover it
    # (tests/integration/test_stats_stream.py, tests/unit/test_stats_stream.py).
    return schema.exclude(path="/stats/stream")


def operations(api: str) -> list[str]:
    return [result.ok().label for result in load(APPS[api]()).get_all_operations()]


CASES = [(api, label) for api in APPS for label in operations(api)]

# What each run must have seen, beyond the contract: the fuzzing reached past validation
# (accepted as well as refused), and a protected operation refused every request without a
# token (405 is `unsupported_method` probing other verbs).
REFUSED_WITHOUT_TOKEN = {401, 405}
EXPECTED: dict[tuple[str, str, bool], Callable[[set[int]], bool]] = {
    ("command", "POST /transactions", True): lambda seen: {201, 422} <= seen,
    ("command", "POST /transactions/batch", True): lambda seen: {201, 422} <= seen,
    ("command", "POST /transactions", False): lambda seen: seen <= REFUSED_WITHOUT_TOKEN,
    ("command", "POST /transactions/batch", False): lambda seen: seen <= REFUSED_WITHOUT_TOKEN,
    ("open-query", "GET /stats", True): lambda seen: {200, 422} <= seen,
    ("open-query", "GET /stats", False): lambda seen: {200, 422} <= seen,
    ("protected-query", "GET /stats", True): lambda seen: {200, 422} <= seen,
    ("protected-query", "GET /stats", False): lambda seen: seen <= REFUSED_WITHOUT_TOKEN,
}


# A valid body is rare among generated ones (a batch's every item must be valid, a timestamp
# in the future is refused, and a generated Idempotency-Key header is seldom an RFC 8941
# string): one of each is given explicitly, so that every run also proves the token and the
# app accept one at all (60 generated single POSTs once met no 201).
EXPLICIT: dict[str, dict[str, Any]] = {
    "POST /transactions": {
        "body": {"amount": "1.00", "timestamp": "2026-01-01T00:00:00Z"},
        "media_type": "application/json",
    },
    "POST /transactions/batch": {
        "body": {"transactions": [{"amount": "1.00", "timestamp": "2026-01-01T00:00:00Z"}]},
        "media_type": "application/json",
    },
}


def strategy(operation: Any) -> Any:
    """Valid requests, and schema-invalid ones where the operation takes any input."""
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    if not (len(operation.query) or len(operation.body)):
        return positive
    return st.one_of(positive, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))


def assert_contract(case: Any, response: Any) -> None:
    label = case.operation.label
    promised = is_promised_consistency_timeout(case, response)
    assert response.status_code < 500 or promised, (
        f"{label}: {response.status_code} {response.text[:500]}"
    )
    if response.status_code >= 400:
        assert response.headers.get("content-type") == [PROBLEM_JSON], response.headers
        problem = response.json()
        assert problem["status"] == response.status_code
        assert {"type", "title", "detail"} <= problem.keys()
        assert "Traceback" not in response.text
    case.validate_response(
        response, checks=[c for c in CHECKS if not promised or c is not not_a_server_error]
    )


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
@pytest.mark.parametrize(("api", "label"), CASES, ids=[f"{api} {label}" for api, label in CASES])
def test_every_answer_keeps_the_contract(api: str, label: str, with_token: bool) -> None:
    method, path = label.split(" ", 1)
    operation = load(APPS[api]())[path][method]
    seen: Counter[int] = Counter()

    def call(case: Any) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = headers
        if with_token:
            response = case.call(headers={"Authorization": f"Bearer {token(scopes=TOKENS[api])}"})
        else:
            response = case.call()
        seen[response.status_code] += 1
        assert_contract(case, response)

    run = given(case=strategy(operation))(call)
    if label in EXPLICIT:
        run = example(case=operation.Case(**EXPLICIT[label]))(run)
    fuzz = settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    fuzz(run)()
    expected = EXPECTED.get((api, label, with_token))
    assert expected is None or expected(set(seen)), dict(seen)


def test_every_main_operation_is_fuzzed() -> None:
    """The expectations above name operations the specs really have."""
    assert {(api, label) for api, label, _ in EXPECTED} <= set(CASES)
