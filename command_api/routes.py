"""HTTP routes of the command API: translate a validated body to one recorder call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from command_api.deps import BatchWrite, TransactionWrite
from command_api.errors import write_responses
from command_api.idempotency import HEADER, IDEMPOTENCY_KEY_PATTERN
from command_api.models import (
    POSTED_ID_RULE,
    BatchRecordedResponse,
    TransactionBatchRequest,
    TransactionRecordedResponse,
    TransactionRequest,
    batch_recorded_json,
    recorded_json,
)
from shared.auth import bearer_security_scheme
from shared.openapi import json_request_body

# The dependencies read the bearer token and the Idempotency-Key header themselves (see
# deps.py), so the routes say in their OpenAPI what FastAPI would have said for them.
_IDEMPOTENCY_KEY_DOC = (
    f'The transaction id as an RFC 8941 string, e.g. `"order-1"` ({POSTED_ID_RULE}): used when '
    "the body has no `transaction_id`; both present and different answers 422. Keys are kept "
    "forever: a retry, however late, is counted once."
)
_IDEMPOTENCY_KEY_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": _IDEMPOTENCY_KEY_DOC,
    # the schema of a present header: a header cannot be null
    "schema": {
        "type": "string",
        "pattern": IDEMPOTENCY_KEY_PATTERN,
        "examples": ['"order-1"'],
        "title": HEADER,
    },
    "examples": {"order-1": {"value": '"order-1"'}},
}
_BEARER: list[dict[str, list[str]]] = [{name: []} for name in bearer_security_scheme()]


def _openapi(model: type[Any], *, parameters: list[dict[str, Any]] | None = None) -> Any:
    extra = {**json_request_body(model), "security": _BEARER}
    return {**extra, "parameters": parameters} if parameters else extra


_DURABLE = (
    "Answers **201 only after the event log acknowledged the write** with `acks=all` "
    "(idempotent producer): a 201 means the transaction is durably in the log. Kafka "
    "unreachable, an unknown topic or no acknowledgement within PUBLISH_TIMEOUT_SECONDS "
    "answer 503 with `Retry-After`, never 201. Requires a bearer token with the scope "
    "`transactions:write`; the token's `sub` is recorded as the producer."
)


async def record_transaction(write: TransactionWrite) -> Response:
    receipt = await write.recorder.record(write.command, producer=write.producer)
    return _created(recorded_json(receipt))


async def record_transactions(write: BatchWrite) -> Response:
    receipt = await write.recorder.record_batch(write.command, producer=write.producer)
    return _created(batch_recorded_json(receipt))


def _created(document: bytes) -> Response:
    return Response(document, status_code=201, media_type="application/json")


def build_router(*, max_body_bytes: int) -> APIRouter:
    """The write routes, their OpenAPI stating this deployment's body limit."""
    responses = write_responses(max_body_bytes=max_body_bytes)
    router = APIRouter(tags=["transactions"])
    router.add_api_route(
        "/transactions",
        record_transaction,
        methods=["POST"],
        status_code=201,
        summary="Record one transaction",
        description=_DURABLE + "\n\nThe `consistency_token` names the partition and offset of "
        "the event itself; the query API treats it as covered once the projection is past it.",
        response_model=TransactionRecordedResponse,
        responses=responses,
        openapi_extra=_openapi(TransactionRequest, parameters=[_IDEMPOTENCY_KEY_PARAMETER]),
    )
    router.add_api_route(
        "/transactions/batch",
        record_transactions,
        methods=["POST"],
        status_code=201,
        summary="Record up to 1,000 transactions",
        description=_DURABLE + "\n\nThe whole batch is validated first: one invalid item "
        "answers 422 naming it (`transactions.<index>.<field>`) and nothing is written. The "
        "events are then sent together (pipelined) and the 201 comes once **all** are "
        "acknowledged; it lists one position per item, in request order, and a "
        "`consistency_token` with the highest offset written per partition. If any publish "
        "fails the answer is 503, and some items may already be in the log: **send your own "
        "`transaction_id`s** so that retrying the same batch is safe (the projector counts "
        "each id once). Ids generated for items without one are only reported in a 201.",
        response_model=BatchRecordedResponse,
        responses=responses,
        openapi_extra=_openapi(TransactionBatchRequest),
    )
    return router
