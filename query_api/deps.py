"""FastAPI dependencies the query API's features share, as `Annotated` aliases over typed
providers: the objects `create_app` built, handed to routes, and the guard of the reads.

Each object is kept on the app under its own type (`shared.web.AppServices`), so a feature
names the dependency of its own service without this module knowing any feature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request

from query_api.position_board import PositionBoard
from shared.auth import SCOPE_READ, JwtVerifier, require_scope
from shared.web import AppServices

if TYPE_CHECKING:
    from query_api.adapters.postgres_listener import PostgresPositionListener

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueryServices:
    """What the features share, built once by `create_app`: the verifier of bearer tokens;
    and the position board and its listener, which tests watch."""

    verifier: JwtVerifier
    board: PositionBoard
    listener: PostgresPositionListener | None = None  # None when a test injected the reader


def install_services(app: FastAPI, *built: object) -> None:
    """Hand each of `built` to every request of `app`, under its type (called by the
    composition root)."""
    for value in built:
        AppServices(type(value)).install(app, value)


def provider(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """The dependency that hands a request the `kind` its app was built with."""
    services = AppServices(kind)

    # `async`: FastAPI runs a plain `def` dependency in its thread pool (a thread hop per request)
    async def provide(request: Request) -> T:
        return services.of(request.app)

    return provide


def services_of(app: FastAPI) -> QueryServices:
    """What `create_app` built for `app` (tests read the board and the listener through it)."""
    return AppServices(QueryServices).of(app)


Services = Annotated[QueryServices, Depends(provider(QueryServices))]


async def get_verifier(services: Services) -> JwtVerifier:
    return services.verifier


def read_guard(*, require_auth: bool) -> list[Any]:
    """Dependencies of the stats routes: scope `stats:read` when reads are protected."""
    if not require_auth:
        return []
    return [Depends(require_scope(SCOPE_READ, verifier=get_verifier))]
