"""HTTP routes of the command API: translate a validated body to one recorder call."""

from __future__ import annotations

from fastapi import APIRouter, Response

from command_api.deps import BatchCommands, Recorder, TransactionCommand, Writer
from command_api.errors import WRITE_RESPONSES
from command_api.models import (
    BatchRecordedResponse,
    TransactionBatchRequest,
    TransactionRecordedResponse,
    TransactionRequest,
    batch_recorded_json,
    recorded_json,
)
from shared.openapi import json_request_body

router = APIRouter(tags=["transactions"])

_DURABLE = (
    "Answers **201 only after the event log acknowledged the write** with `acks=all` "
    "(idempotent producer): a 201 means the transaction is durably in the log. Kafka "
    "unreachable, an unknown topic or no acknowledgement within PUBLISH_TIMEOUT_SECONDS "
    "answer 503 with `Retry-After`, never 201. Requires a bearer token with the scope "
    "`transactions:write`; the token's `sub` is recorded as the producer."
)


@router.post(
    "/transactions",
    status_code=201,
    summary="Record one transaction",
    description=_DURABLE + "\n\nThe `consistency_token` names the partition and offset of the "
    "event itself; the query API treats it as covered once the projection is past it.",
    response_model=TransactionRecordedResponse,
    responses=WRITE_RESPONSES,
    openapi_extra=json_request_body(TransactionRequest),
)
async def record_transaction(
    principal: Writer, command: TransactionCommand, recorder: Recorder
) -> Response:
    receipt = await recorder.record(command, producer=principal.subject)
    return _created(recorded_json(receipt))


@router.post(
    "/transactions/batch",
    status_code=201,
    summary="Record up to 1,000 transactions",
    description=_DURABLE + "\n\nThe whole batch is validated first: one invalid item answers "
    "422 naming it (`transactions.<index>.<field>`) and nothing is written. The events are "
    "then sent together (pipelined) and the 201 comes once **all** are acknowledged; it lists "
    "one position per item, in request order, and a `consistency_token` with the highest "
    "offset written per partition. If any publish fails the answer is 503, and some items may "
    "already be in the log: **send your own `transaction_id`s** so that retrying the same "
    "batch is safe (the projector counts each id once). Ids generated for items without one "
    "are only reported in a 201.",
    response_model=BatchRecordedResponse,
    responses=WRITE_RESPONSES,
    openapi_extra=json_request_body(TransactionBatchRequest),
)
async def record_transactions(
    principal: Writer, commands: BatchCommands, recorder: Recorder
) -> Response:
    receipt = await recorder.record_batch(commands, producer=principal.subject)
    return _created(batch_recorded_json(receipt))


def _created(document: bytes) -> Response:
    return Response(document, status_code=201, media_type="application/json")
