"""OpenAPI with our own components: request models read by dependencies (exact decimals)
and the problem-details schema every error response references. A route whose body such a
dependency reads declares it with `json_request_body`, which references the model that
`install_openapi` registers under components."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from shared.errors import ProblemDetails

SCHEMA_REF = "#/components/schemas/{model}"


def install_openapi(
    app: FastAPI,
    *,
    models: list[type[BaseModel]] | None = None,
    security_schemes: dict[str, Any] | None = None,
) -> None:
    """Generate the schema once, with `models` (and `ProblemDetails`) under components, and
    `security_schemes` that routes name without a FastAPI security dependency."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            if security_schemes:
                schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
                schemes.update(security_schemes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            registered: list[type[BaseModel]] = [*(models or []), ProblemDetails]
            for model in registered:
                model_schema = model.model_json_schema(ref_template=SCHEMA_REF)
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` for a route whose body `model` is read by a dependency."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": SCHEMA_REF.format(model=model.__name__)}}
            },
        }
    }
