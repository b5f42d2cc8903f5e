"""OpenAPI for bodies we parse ourselves (exact decimals): the request schemas and the
problem-details schema are registered as components and referenced from the operations."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from shared.errors import ProblemDetails

_REF = "#/components/schemas/{model}"


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` for a route whose body `model` is read by a dependency."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        }
    }


def install_openapi(app: FastAPI, *, models: list[type[BaseModel]]) -> None:
    """Generate the schema once, with `models` (and `ProblemDetails`) under components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            registered: list[type[BaseModel]] = [*models, ProblemDetails]
            for model in registered:
                model_schema = model.model_json_schema(ref_template=_REF)
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
