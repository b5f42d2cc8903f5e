"""What the OpenAPI fuzzing (tests/unit/test_openapi_fuzz.py, in process) and the live
schemathesis run (tests/integration/schemathesis_hooks.py) both accept beyond the documents.

The one 5xx that is the contract's own answer: a read given a `consistency_token` that the
projection does not cover within `wait_ms` is a 503 `consistency-timeout` with `Retry-After`
(a generated token names positions the log never reached).
"""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


def is_promised_consistency_timeout(case: Any, response: Any) -> bool:
    """Whether `response` (a schemathesis Response) is that 503, to a request with a token."""
    if response.status_code != 503 or not (case.query or {}).get("consistency_token"):
        return False
    if response.headers.get("content-type") != [PROBLEM_JSON]:
        return False
    return str(response.json().get("type", "")).endswith("/consistency-timeout")
