"""OpenAPI for bodies we parse ourselves (exact decimals): the operation references the
request model, which `shared.openapi.install_openapi` registers under components."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.openapi import SCHEMA_REF


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
