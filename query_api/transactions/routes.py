"""`GET /transactions/{transaction_id}`: a producer asks whether its transaction was counted.

Always behind a JWT (it shows one transaction's amount), even when stats reads are open. A
producer's ids are its own: scope `transactions:read` reads the token's own transaction (its
`sub`, the id); with `transactions:read:any` a reader may name any `producer`. Not found and
not yours answer the same 404, so ids cannot be probed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from query_api.as_of import AsOf
from query_api.consistency import (
    MAX_TOKEN_LENGTH,
    MAX_WAIT_MS,
    REQUEST_LINE_RESPONSE,
    TOKEN_SCHEMA,
)
from query_api.deps import get_verifier, provider
from query_api.transactions.models import TransactionResponse
from query_api.transactions.service import TransactionStatusService
from shared.auth import (
    SCOPE_TRANSACTIONS_READ,
    SCOPE_TRANSACTIONS_READ_ANY,
    Principal,
    require_scope,
)
from shared.errors import Problem, problem_response
from shared.events import MAX_PRODUCER_LENGTH, MAX_TRANSACTION_ID_LENGTH, NO_CONTROL_CHARACTERS

TRANSACTION_NOT_FOUND = Problem(404, "transaction-not-found", "Transaction not counted (yet)")

_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"content": {"application/problem+json": {}}, "description": text}
    for status, text in (
        (401, "Bearer token missing or invalid"),
        (
            403,
            "Token lacks the scope transactions:read, or names another `producer` without "
            "transactions:read:any",
        ),
        (
            404,
            "Not counted as of `as_of` (never folded yet, or not this token's transaction): "
            "problem+json with `transaction_id`, `state: not_found` and `as_of`",
        ),
        (
            422,
            "Invalid transaction_id or producer (a control character, too long), wait_ms or "
            "consistency_token",
        ),
        (503, "Store unavailable, or the projection did not cover the token in time"),
    )
}

StatusServiceDep = Annotated[TransactionStatusService, Depends(provider(TransactionStatusService))]
Reader = Annotated[
    Principal, Depends(require_scope(SCOPE_TRANSACTIONS_READ, verifier=get_verifier))
]

router = APIRouter(tags=["transactions"])


@router.get(
    "/transactions/{transaction_id}",
    summary="The fate of one transaction",
    description="Whether the projection counted this transaction: `state: counted` with the "
    "counted (first) occurrence, how many later occurrences were skipped as duplicates, and "
    "those whose amount or occurred_at differ (conflicts, never counted). A producer's ids are "
    "its own: the transaction read is the token's (its `sub` posted it) unless a token with "
    "`transactions:read:any` names another `producer`. Otherwise 404 "
    "with `as_of`: the offsets the projection had read. With `consistency_token` (from the "
    "POST) it first waits like `/stats` does, so a 404 then means not counted. One "
    "primary-key read.",
    response_model=TransactionResponse,
    responses={**_RESPONSES, **REQUEST_LINE_RESPONSE},
)
async def get_transaction(
    principal: Reader,
    service: StatusServiceDep,
    *,
    transaction_id: Annotated[
        str,
        Path(min_length=1, max_length=MAX_TRANSACTION_ID_LENGTH, pattern=NO_CONTROL_CHARACTERS),
    ],
    producer: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_PRODUCER_LENGTH,
            pattern=NO_CONTROL_CHARACTERS,
            description="Whose transaction (a JWT subject that posts): the token's own when "
            "absent; another only with the scope transactions:read:any",
        ),
    ] = None,
    consistency_token: Annotated[
        str | None, TOKEN_SCHEMA, Query(max_length=MAX_TOKEN_LENGTH)
    ] = None,
    wait_ms: Annotated[int | None, Query(ge=0, le=MAX_WAIT_MS)] = None,
) -> TransactionResponse | JSONResponse:
    view = await service.lookup(
        transaction_id=transaction_id,
        subject=principal.subject,
        sees_any=SCOPE_TRANSACTIONS_READ_ANY in principal.scopes,
        producer=producer,
        consistency_token=consistency_token,
        wait_ms=wait_ms,
    )
    if view.record is None:
        found_as_of = AsOf.of(view.version, view.positions, view.read_at)
        return problem_response(
            TRANSACTION_NOT_FOUND,
            f"No counted transaction {transaction_id!r} visible to this token as of the "
            "projection's offsets in `as_of`.",
            extensions={
                "transaction_id": transaction_id,
                "state": "not_found",
                "as_of": found_as_of.model_dump(mode="json"),
            },
        )
    return TransactionResponse.from_view(view)
