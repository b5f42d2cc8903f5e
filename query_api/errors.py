"""The query API's domain errors; `routes.py` translates them to problem+json."""

from __future__ import annotations


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
