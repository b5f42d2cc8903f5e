"""schemathesis hooks of the live contract run (tests/integration/test_openapi_live.py), loaded
with `SCHEMATHESIS_HOOKS=tests.integration.schemathesis_hooks`.

The OpenAPI documents state every rule of one field (patterns, bounds, formats). Three rules
relate a value to something JSON Schema cannot see, so a schema-valid request may break them:
a timestamp at most MAX_CLOCK_SKEW_SECONDS ahead of the server's clock (and, with its offset,
a time that UTC can hold: not `0001-01-01T00:00:00+01:00`), distinct transaction
ids within one batch, and an `Idempotency-Key` equal to the body's `transaction_id` when both
are given. Before each call, a generated request that breaks one of them is made to keep it
(such a timestamp moves to the past, a repeated id gets a distinct one, the body takes the
header's id); nothing else is changed, so every schema violation of a negative case stays.
The unit tests hold the three rules themselves (tests/unit/test_command_validation.py,
tests/unit/test_batch.py, tests/unit/test_command_api.py).

schemathesis' coverage phase labels positive some cases that carry `Idempotency-Key: 0` (its
base value for a header whose pattern it does not satisfy): a case labelled positive whose
header breaks the header's own schema is not generated.

One 5xx is the contract's own answer (tests/openapi_rules.py): that failure, and no other
5xx, is dropped.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import schemathesis
from schemathesis.core.failures import Failure, ServerError

from tests.openapi_rules import is_promised_consistency_timeout

PAST = "2026-01-01T00:00:00Z"
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_KEY = re.compile(r' *"([A-Za-z0-9._:-]{1,64})" *')


def _not_a_past_utc_time(value: Any) -> bool:
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        return False
    try:
        moment = datetime.fromisoformat(value.upper().replace(" ", "T"))
    except ValueError:
        return False
    try:
        return moment.astimezone(UTC) > datetime.now(UTC)
    except OverflowError:
        return True


def _keep_in_the_past(item: Any) -> None:
    if isinstance(item, dict) and _not_a_past_utc_time(item.get("timestamp")):
        item["timestamp"] = PAST


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    key = (case.headers or {}).get("Idempotency-Key")
    if key is None or case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    return _KEY.fullmatch(str(key)) is not None


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    headers = case.headers or {}
    if case.operation.label == "POST /transactions" and isinstance(body, dict):
        _keep_in_the_past(body)
        key = _KEY.fullmatch(headers.get("Idempotency-Key") or "")
        if key is not None and _valid_id(body.get("transaction_id")):
            body["transaction_id"] = key.group(1)
    elif case.operation.label == "POST /transactions/batch" and isinstance(body, dict):
        items = body.get("transactions")
        if not isinstance(items, list):
            return
        seen: set[str] = set()
        for index, item in enumerate(items):
            _keep_in_the_past(item)
            if isinstance(item, dict) and _valid_id(item.get("transaction_id")):
                if item["transaction_id"] in seen:
                    item["transaction_id"] = f"distinct-{index}"
                seen.add(item["transaction_id"])


@schemathesis.hook
def filter_failure(context: Any, failure: Failure, case: Any, response: Any) -> bool:
    """Keep every failure but the documented 503 of a token the projection did not reach."""
    return not (
        isinstance(failure, ServerError) and is_promised_consistency_timeout(case, response)
    )
