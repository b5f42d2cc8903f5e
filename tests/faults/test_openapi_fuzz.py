"""schemathesis against both OpenAPI specs, every operation, with and without a valid token.

In process: each app is served over ASGI with its in-memory fake (the command API with an
`InMemoryEventPublisher`, the query API with an `InMemoryProjectionReader`), so hundreds of
generated requests take seconds. The contract checked on every response: no 5xx, every error
is `application/problem+json` with a matching `status`, the answer's status, content type and
body conform to the spec, and schema-invalid requests are refused (negative data).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from command_api.adapters.memory_publisher import InMemoryEventPublisher
from command_api.main import create_app as create_command_app
from query_api.adapters.memory_reader import InMemoryProjectionReader
from query_api.config import QueryConfig
from query_api.main import create_app as create_query_app
from shared.auth import SCOPE_READ, SCOPE_WRITE
from shared.settings import DatabaseSettings, LogSettings, QuerySettings
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
PROBLEM_JSON = "application/problem+json"
PROTECTED = {"POST /transactions", "POST /transactions/batch"}

# Status codes seen per (api, operation, token?): the run must have exercised the API,
# not only its front door (checked at the end of the module).
SEEN: Counter[tuple[str, str, bool, int]] = Counter()


def _loaded(app: Any) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The token is ours (valid, or none at all): schemathesis does not generate one, so a
    # "negative" case is never just a missing header that the test then fills in. Unknown
    # query parameters are ignored, as HTTP APIs commonly do: not a schema violation.
    schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=True)
    return schema


def _command_schema() -> Any:
    return _loaded(create_command_app(command_config(), publisher=InMemoryEventPublisher()))


PROTECTED_READS: list[Any] = []  # the query apps built with STATS_REQUIRE_AUTH=true


def _query_schema(*, require_auth: bool) -> Any:
    reader = InMemoryProjectionReader()
    reader.record(partition=0, amount=Decimal("10.00"), event_second=1_700_000_000)
    reader.record(partition=3, amount=Decimal("0.01"), event_second=1_700_000_100)
    config = QueryConfig(
        database=DatabaseSettings(),
        jwt=jwt_settings(),
        query=QuerySettings(stats_require_auth=require_auth, default_wait_ms=0),
        log=LogSettings(),
    )
    app = create_query_app(config, reader=reader, clock=lambda: 1_700_000_120.0)
    if require_auth:
        PROTECTED_READS.append(app)
    # A 200 from GET /stats/stream never ends (Server-Sent Events): its own tests cover it
    # (tests/integration/test_stats_stream.py, tests/unit/test_stats_stream.py).
    return _loaded(app).exclude(path="/stats/stream")


def _assert_contract(api: str, case: Any, response: Any, *, with_token: bool) -> None:
    label = case.operation.label
    SEEN[(api, label, with_token, response.status_code)] += 1
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers.get("content-type") == [PROBLEM_JSON], response.headers
        problem = response.json()
        assert problem["status"] == response.status_code
        assert {"type", "title", "detail"} <= problem.keys()
        assert "Traceback" not in response.text
    case.validate_response(response, checks=CHECKS)


def _without_authorization(case: Any) -> dict[str, Any]:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    case.headers = headers
    return headers


FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@schemathesis.pytest.parametrize(command=_command_schema())
@FUZZ
def test_command_api_with_a_valid_token(case: Any) -> None:
    valid = token(scopes=f"{SCOPE_WRITE} {SCOPE_READ}")
    response = case.call(headers={"Authorization": f"Bearer {valid}"})
    _assert_contract("command", case, response, with_token=True)


@schemathesis.pytest.parametrize(command=_command_schema())
@FUZZ
def test_command_api_without_a_token(case: Any) -> None:
    _without_authorization(case)
    response = case.call()
    _assert_contract("command", case, response, with_token=False)
    if case.operation.label in PROTECTED and case.method.upper() == "POST":
        assert response.status_code == 401, response.text


@schemathesis.pytest.parametrize(
    open_reads=_query_schema(require_auth=False), protected_reads=_query_schema(require_auth=True)
)
@FUZZ
def test_query_api_with_a_valid_token(case: Any) -> None:
    valid = token(scopes=SCOPE_READ)
    response = case.call(headers={"Authorization": f"Bearer {valid}"})
    _assert_contract("query", case, response, with_token=True)


@schemathesis.pytest.parametrize(
    open_reads=_query_schema(require_auth=False), protected_reads=_query_schema(require_auth=True)
)
@FUZZ
def test_query_api_without_a_token(case: Any) -> None:
    _without_authorization(case)
    response = case.call()
    _assert_contract("query", case, response, with_token=False)
    if case.operation.app in PROTECTED_READS and case.operation.label == "GET /stats":
        assert response.status_code in {401, 405}, response.text


def test_the_fuzzing_reached_past_validation() -> None:
    """Run last in this module: the generated requests were accepted as well as refused."""
    if not SEEN:  # this test was selected alone
        return
    by_status: Counter[int] = Counter()
    for (*_, status), count in SEEN.items():
        by_status[status] += count
    print(f"\nschemathesis: {sum(SEEN.values())} requests, by status {dict(by_status)}")  # noqa: T201
    statuses: defaultdict[tuple[str, str, bool], set[int]] = defaultdict(set)
    for api, label, auth, status in SEEN:
        statuses[(api, label, auth)].add(status)
    assert 201 in statuses[("command", "POST /transactions", True)]
    assert 201 in statuses[("command", "POST /transactions/batch", True)]
    assert statuses[("command", "POST /transactions", False)] <= {401, 405}
    assert 200 in statuses[("query", "GET /stats", True)]
    assert 422 in statuses[("query", "GET /stats", True)]
