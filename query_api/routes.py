"""HTTP edge of the query API: parameters in, one service call, DTO or problem+json out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from query_api.deps import StatsServiceDep
from query_api.errors import ConsistencyTimeoutError, InvalidQueryError, ProjectionUnavailableError
from query_api.models import StatsResponse
from query_api.services import MAX_WAIT_MS
from query_api.windows import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS
from shared.errors import VALIDATION, Problem, problem_response

CONSISTENCY_TIMEOUT = Problem(
    503, "consistency-timeout", "Projection not caught up yet", {"Retry-After": "1"}
)
PROJECTION_UNAVAILABLE = Problem(
    503, "projection-unavailable", "Statistics store unavailable", {"Retry-After": "1"}
)
QUERY_PROBLEMS: dict[type[Exception], Problem] = {
    ConsistencyTimeoutError: CONSISTENCY_TIMEOUT,
    ProjectionUnavailableError: PROJECTION_UNAVAILABLE,
}
_PROBLEM_DOC: dict[int | str, dict[str, Any]] = {
    status: {"content": {"application/problem+json": {}}, "description": text}
    for status, text in (
        (401, "Bearer token missing or invalid (when reads are protected)"),
        (403, "Token lacks the scope stats:read"),
        (422, "Invalid window, wait_ms or consistency_token"),
        (503, "Store unavailable, or the projection did not cover the token in time"),
    )
}

WindowParam = Annotated[
    int | None,
    Query(
        ge=MIN_WINDOW_SECONDS,
        le=MAX_WINDOW_SECONDS,
        description="Sliding window over event time: the last N seconds up to now.",
    ),
]
TokenParam = Annotated[
    str | None,
    Query(max_length=32_768, description="Wait until the projection covers this POST's token."),
]
WaitParam = Annotated[
    int | None,
    Query(ge=0, le=MAX_WAIT_MS, description="Longest wait for consistency_token (default 2000)."),
]

router = APIRouter(tags=["stats"])


@router.get("/stats", summary="Transaction statistics", responses=_PROBLEM_DOC)
async def get_stats(
    service: StatsServiceDep,
    window: WindowParam = None,
    consistency_token: TokenParam = None,
    wait_ms: WaitParam = None,
) -> StatsResponse:
    view = await service.stats(
        window_seconds=window, consistency_token=consistency_token, wait_ms=wait_ms
    )
    return StatsResponse.from_view(view)


def install_query_error_handlers(app: FastAPI) -> None:
    """A parameter the service refused is a field error, like any validation failure."""

    async def on_invalid_query(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidQueryError)
        error = {"field": exc.field, "location": "query", "message": exc.message}
        return problem_response(
            VALIDATION, "One or more fields are invalid.", errors=[{**error, "code": "invalid"}]
        )

    app.add_exception_handler(InvalidQueryError, on_invalid_query)
