"""How the command API's own errors look on the wire (RFC 9457 problem details)."""

from __future__ import annotations

from typing import Any

from command_api.decoding import MalformedJsonError, UnsupportedMediaTypeError
from command_api.ports import PublishFailedError
from shared.auth import AUTH_PROBLEMS
from shared.errors import Problem, problem_responses

RETRY_AFTER_SECONDS = 1

MALFORMED_JSON = Problem(400, "bad-request", "Malformed JSON")
UNSUPPORTED_MEDIA_TYPE = Problem(415, "unsupported-media-type", "Unsupported media type")
EVENT_LOG_UNAVAILABLE = Problem(
    503, "event-log-unavailable", "Event log unavailable", {"Retry-After": str(RETRY_AFTER_SECONDS)}
)

COMMAND_PROBLEMS: dict[type[Exception], Problem] = {
    **AUTH_PROBLEMS,
    MalformedJsonError: MALFORMED_JSON,
    UnsupportedMediaTypeError: UNSUPPORTED_MEDIA_TYPE,
    PublishFailedError: EVENT_LOG_UNAVAILABLE,
}


def write_responses(*, max_body_bytes: int) -> dict[int | str, dict[str, Any]]:
    """The write routes' error responses, the body limit as configured (MAX_BODY_BYTES)."""
    return problem_responses(
        {
            400: "Malformed JSON: not one valid UTF-8 JSON document, `NaN`/`Infinity`, a key "
            "repeated in one object, or a number beyond any representable range.",
            401: "No bearer token, or one that is malformed, expired, not yet valid, badly "
            "signed, signed with an algorithm we do not accept, or for another "
            "audience/issuer.",
            403: "A valid token without the scope `transactions:write`.",
            413: f"The body exceeds {_size(max_body_bytes)} (refused before it is read whole).",
            415: "The body is not sent as `Content-Type: application/json` (UTF-8).",
            422: "A field breaks a rule; `errors` lists every failing field (batch items by "
            "index, e.g. `transactions.3.amount`). Nothing was written.",
            503: "The event log did not confirm the write within PUBLISH_TIMEOUT_SECONDS (or is "
            "unreachable). Nothing is promised: some events may still be appended. Retry after "
            "`Retry-After` seconds with the same transaction ids; each id is counted once.",
        }
    )


def _size(count: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"
