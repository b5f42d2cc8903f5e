"""FastAPI dependencies of the query API, as `Annotated` aliases over typed providers: what the
lifespan built (one `QueryServices`), handed to routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request

from query_api.ports import ProjectionReader
from query_api.position_board import PositionBoard
from query_api.stats.service import StatsService
from query_api.stream.broadcaster import StatsBroadcaster
from query_api.transactions.service import TransactionService
from shared.auth import SCOPE_READ, JwtVerifier, require_scope
from shared.web import AppServices

if TYPE_CHECKING:
    from query_api.adapters.postgres_listener import PostgresPositionListener


@dataclass(frozen=True, slots=True)
class QueryServices:
    """Everything a request of the query API needs, built once by `create_app`'s lifespan."""

    verifier: JwtVerifier
    board: PositionBoard
    reader: ProjectionReader
    stats: StatsService
    stream: StatsBroadcaster
    transactions: TransactionService
    listener: PostgresPositionListener | None = None  # None when a test injected the reader


_services = AppServices(QueryServices)


def install_services(app: FastAPI, services: QueryServices) -> None:
    """Hand `services` to every request of `app` (called by the composition root)."""
    _services.install(app, services)


def services_of(app: FastAPI) -> QueryServices:
    """What `app`'s lifespan built (tests read the board and the listener through it)."""
    return _services.of(app)


# `async`: FastAPI runs a plain `def` dependency in its thread pool (a thread hop per request)
async def get_services(request: Request) -> QueryServices:
    return _services.of(request.app)


Services = Annotated[QueryServices, Depends(get_services)]


async def get_verifier(services: Services) -> JwtVerifier:
    return services.verifier


async def get_stats_service(services: Services) -> StatsService:
    return services.stats


StatsServiceDep = Annotated[StatsService, Depends(get_stats_service)]


async def get_transaction_service(services: Services) -> TransactionService:
    return services.transactions


TransactionServiceDep = Annotated[TransactionService, Depends(get_transaction_service)]


def read_guard(*, require_auth: bool) -> list[Any]:
    """Dependencies of the stats routes: scope `stats:read` when reads are protected."""
    if not require_auth:
        return []
    return [Depends(require_scope(SCOPE_READ, verifier=get_verifier))]
