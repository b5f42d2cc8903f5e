"""RFC 9457 problem details: every error any of our APIs returns has this shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://txstats.dev/problems/"


@dataclass(frozen=True, slots=True)
class Problem:
    """How one kind of error looks on the wire."""

    status: int
    slug: str
    title: str
    headers: Mapping[str, str] = field(default_factory=dict)


def problem_response(
    problem: Problem,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = list(errors)
    for key, value in (extensions or {}).items():  # RFC 9457 extension members
        body.setdefault(key, value)
    return JSONResponse(
        body,
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers={**problem.headers, **(headers or {})},
    )


class FieldErrorDetail(BaseModel):
    """One entry of a problem's `errors`: which field failed which rule."""

    field: str = Field(
        description="Dotted path inside `location`: `amount`, `transactions.3.amount` (body),"
        " `window` (query)."
    )
    location: str = Field(description="Where the field is: `body`, `query`, `header`, `path`.")
    message: str
    code: str = Field(description="Machine-readable rule, e.g. `greater_than`.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, served as `application/problem+json` (OpenAPI schema only)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorDetail] | None = Field(
        default=None, description="Present on 422: every field that failed validation."
    )


PROBLEM_SCHEMA_REF = "#/components/schemas/ProblemDetails"


def problem_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: each status as `application/problem+json`. The app's
    OpenAPI must carry `ProblemDetails` under components (register it with the schema)."""
    return {
        status: {
            "description": text,
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        }
        for status, text in descriptions.items()
    }


VALIDATION = Problem(422, "validation-error", "Request validation failed")
INTERNAL = Problem(500, "internal-error", "Internal server error")

_HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def _http_problem(status: int, title: str) -> Problem:
    return Problem(status, _HTTP_SLUGS.get(status, f"http-{status}"), title)


_LOCATIONS = frozenset({"body", "query", "header", "path", "cookie"})


def _field_errors(err: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for item in err.errors():
        # One convention for every location: `location` says where, `field` is the path inside
        # it (never prefixed with the location).
        loc = [str(part) for part in item.get("loc", ())]
        location = loc[0] if loc and loc[0] in _LOCATIONS else "body"
        out.append(
            {
                "field": ".".join(loc[1:] if loc[:1] == [location] else loc),
                "location": location,
                "message": str(item.get("msg", "invalid")),
                "code": str(item.get("type", "invalid")),
            }
        )
    return out


def install_error_handlers(app: FastAPI, mapping: Mapping[type[Exception], Problem]) -> None:
    """Translate validation, HTTP, domain (`mapping`) and unexpected errors to problem+json."""

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc)
        if any(error["code"] == "json_invalid" for error in errors):
            return problem_response(
                _http_problem(400, "Malformed JSON"), "The request body is not valid JSON."
            )
        return problem_response(VALIDATION, "One or more fields are invalid.", errors=errors)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem = _http_problem(exc.status_code, str(exc.detail))
        return problem_response(problem, str(exc.detail), headers=exc.headers)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for exc_type, problem in mapping.items():
        app.add_exception_handler(exc_type, _domain_handler(problem))


def _domain_handler(problem: Problem) -> Any:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(problem, str(exc))

    return handle
