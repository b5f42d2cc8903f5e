"""FastAPI dependencies of the query API: what the lifespan built, handed to routes."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import Depends, Request

from query_api.services import StatsService
from query_api.transactions import TransactionService
from shared.auth import SCOPE_READ, require_scope


async def get_stats_service(request: Request) -> StatsService:
    # `async`: FastAPI runs a plain `def` dependency in its thread pool (a thread hop per request)
    return cast(StatsService, request.app.state.stats_service)


StatsServiceDep = Annotated[StatsService, Depends(get_stats_service)]


async def get_transaction_service(request: Request) -> TransactionService:
    return cast(TransactionService, request.app.state.transaction_service)


TransactionServiceDep = Annotated[TransactionService, Depends(get_transaction_service)]


def read_guard(*, require_auth: bool) -> list[Any]:
    """Dependencies of the stats routes: scope `stats:read` when reads are protected."""
    if not require_auth:
        return []
    return [Depends(require_scope(SCOPE_READ))]
