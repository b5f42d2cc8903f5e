"""Reading a JSON request body exactly: numbers become `Decimal` from their text (FastAPI's
default `json.loads` would turn 0.1 into a float), `NaN`/`Infinity` and duplicate keys are
refused, and only `application/json` (UTF-8) is accepted."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from email.message import Message
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

JSON_MEDIA_TYPE = "application/json"

ModelT = TypeVar("ModelT", bound=BaseModel)


class UnsupportedMediaTypeError(Exception):
    """415: the body is not declared as `application/json`."""


class MalformedJsonError(Exception):
    """400: the body is not one valid JSON document."""


def check_content_type(header: str | None) -> None:
    message = Message()
    message["content-type"] = header or ""
    charset = message.get_content_charset("utf-8")
    if message.get_content_type() != JSON_MEDIA_TYPE or charset.lower() not in {"utf-8", "utf8"}:
        msg = "The request body must be sent as Content-Type: application/json (UTF-8)."
        raise UnsupportedMediaTypeError(msg)


def _refuse_constant(name: str) -> Any:
    msg = f"{name} is not a JSON number; send amounts as numbers or decimal strings."
    raise MalformedJsonError(msg)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            msg = f"The key {key!r} appears twice in one JSON object."
            raise MalformedJsonError(msg)
        result[key] = value
    return result


def parse_exact_json(raw: bytes) -> Any:
    """Parse UTF-8 JSON with every number as an exact `Decimal`."""
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError as err:
        msg = "The request body is not valid UTF-8."
        raise MalformedJsonError(msg) from err
    except json.JSONDecodeError as err:
        msg = f"The request body is not valid JSON ({err.msg} at position {err.pos})."
        raise MalformedJsonError(msg) from err
    except RecursionError as err:
        msg = "The request body is nested too deeply."
        raise MalformedJsonError(msg) from err
    except InvalidOperation as err:  # e.g. 1e999999999999999999999: no Decimal holds it
        msg = "The request body holds a number beyond the representable range."
        raise MalformedJsonError(msg) from err


def validate(model: type[ModelT], payload: Any, *, context: object) -> ModelT:
    """Validate a parsed body; field errors become the usual 422 problem (locations under
    `body`, e.g. `transactions.3.amount`)."""
    try:
        return model.model_validate(payload, context=context)
    except ValidationError as err:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in err.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from err


async def read_body(request: Request) -> bytes:
    """The body, once it is declared as JSON."""
    check_content_type(request.headers.get("content-type"))
    return await request.body()
