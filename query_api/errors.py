"""The query API's errors: the domain errors its service and readers raise, and how each
looks on the wire (RFC 9457 problem details), as `command_api/errors.py` does for writes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.auth import AUTH_PROBLEMS
from shared.errors import VALIDATION, Problem, problem_response


class QueryError(Exception):
    """Base of the errors the read side raises on purpose."""


class InvalidQueryError(QueryError):
    """A query parameter the service cannot honour (422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ProjectionUnavailableError(QueryError):
    """The projection store did not answer (down, unreachable, too slow)."""


class ConsistencyTimeoutError(QueryError):
    """The projection did not cover a consistency token within the allowed wait."""


RETRY_AFTER_SECONDS = 1

CONSISTENCY_TIMEOUT = Problem(
    503,
    "consistency-timeout",
    "Projection not caught up yet",
    {"Retry-After": str(RETRY_AFTER_SECONDS)},
)
PROJECTION_UNAVAILABLE = Problem(
    503,
    "projection-unavailable",
    "Statistics store unavailable",
    {"Retry-After": str(RETRY_AFTER_SECONDS)},
)
QUERY_PROBLEMS: dict[type[Exception], Problem] = {
    **AUTH_PROBLEMS,
    ConsistencyTimeoutError: CONSISTENCY_TIMEOUT,
    ProjectionUnavailableError: PROJECTION_UNAVAILABLE,
}


def install_query_error_handlers(app: FastAPI) -> None:
    """A parameter the service refused is a field error, like any validation failure."""

    async def on_invalid_query(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidQueryError)
        error = {"field": exc.field, "location": "query", "message": exc.message}
        return problem_response(
            VALIDATION, "One or more fields are invalid.", errors=[{**error, "code": "invalid"}]
        )

    app.add_exception_handler(InvalidQueryError, on_invalid_query)
