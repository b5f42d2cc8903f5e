"""FastAPI dependencies of the command API, as `Annotated` aliases over typed providers: what the
composition root built (one `CommandServices`), handed to routes, and the commands of the
request bodies, decoded exactly and validated after authentication."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import WithJsonSchema

from command_api.decoding import decode_batch_body, decode_transaction_body, read_body
from command_api.idempotency import (
    HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    IdempotencyKeyError,
    parse_idempotency_key,
    reconcile,
)
from command_api.models import POSTED_ID_RULE, ValidationContext
from command_api.services import Clock, RecordTransaction, TransactionRecorder
from shared.auth import SCOPE_WRITE, JwtVerifier, Principal, require_scope
from shared.web import AppServices


@dataclass(frozen=True, slots=True)
class CommandServices:
    """Everything a request of the command API needs, built once by `create_app`."""

    verifier: JwtVerifier
    clock: Clock
    max_clock_skew: timedelta
    recorder: TransactionRecorder


_services = AppServices(CommandServices)


def install_services(app: FastAPI, services: CommandServices) -> None:
    """Hand `services` to every request of `app` (called by the composition root)."""
    _services.install(app, services)


# `async`: FastAPI runs a plain `def` dependency in its thread pool (a thread hop per request)
async def get_services(request: Request) -> CommandServices:
    return _services.of(request.app)


Services = Annotated[CommandServices, Depends(get_services)]


async def get_verifier(services: Services) -> JwtVerifier:
    return services.verifier


async def get_recorder(services: Services) -> TransactionRecorder:
    return services.recorder


Writer = Annotated[Principal, Depends(require_scope(SCOPE_WRITE, verifier=get_verifier))]
Recorder = Annotated[TransactionRecorder, Depends(get_recorder)]


def _context(services: CommandServices) -> ValidationContext:
    return ValidationContext(now=services.clock(), max_clock_skew=services.max_clock_skew)


IdempotencyKeyHeader = Annotated[
    str | None,
    # The schema of a present header (not `anyOf [string, null]`: a header cannot be null).
    WithJsonSchema(
        {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN, "examples": ['"order-1"']}
    ),
    Header(
        alias=HEADER,
        description='The transaction id as an RFC 8941 string, e.g. `"order-1"` '
        f"({POSTED_ID_RULE}): used when the body has no `transaction_id`; both present and "
        "different answers 422. Keys are kept forever: a retry, however late, is counted once.",
        openapi_examples={"order-1": {"value": '"order-1"'}},
    ),
]


async def transaction_command(
    request: Request, services: Services, _: Writer, idempotency_key: IdempotencyKeyHeader = None
) -> RecordTransaction:
    """The command of `POST /transactions`; its body is read only once the caller is
    authenticated. An `Idempotency-Key` header supplies or must equal its `transaction_id`."""
    errors: list[dict[str, object]] = []
    key = None
    if idempotency_key is not None:
        try:
            key = parse_idempotency_key(idempotency_key)
        except IdempotencyKeyError as err:
            errors.append(err.as_error())
    try:
        command = decode_transaction_body(await read_body(request), _context(services))
    except RequestValidationError as err:
        raise RequestValidationError([*err.errors(), *errors]) from err
    if errors:
        raise RequestValidationError(errors)
    if key is None:
        return command
    try:
        transaction_id = reconcile(command.transaction_id, key)
    except IdempotencyKeyError as err:
        raise RequestValidationError([err.as_error()]) from err
    return replace(command, transaction_id=transaction_id)


async def batch_commands(
    request: Request, services: Services, _: Writer
) -> list[RecordTransaction]:
    """The commands of `POST /transactions/batch`; its body is read only once the caller is
    authenticated. Items carry their own ids: an `Idempotency-Key` header is refused, not
    ignored."""
    if HEADER in request.headers:
        error = IdempotencyKeyError(
            "idempotency_key_not_allowed",
            f"{HEADER} names one transaction: give each batch item its transaction_id",
        )
        raise RequestValidationError([error.as_error()])
    return decode_batch_body(await read_body(request), _context(services))


TransactionCommand = Annotated[RecordTransaction, Depends(transaction_command)]
BatchCommands = Annotated[list[RecordTransaction], Depends(batch_commands)]
