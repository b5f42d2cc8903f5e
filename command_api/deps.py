"""FastAPI dependencies of the command API, as `Annotated` aliases: what the composition root
built (one `CommandServices`), and per write route one dependency that yields the request's
`Write`: who posts (the bearer token's subject, with the write scope), the commands of the
body (decoded exactly, validated after authentication) and the recorder to hand them to.

One dependency per route rather than a graph of small ones (services -> verifier -> scope,
header, body): FastAPI resolves each dependency per request, and on the write path that
resolution was a large part of a request's cost. So the token and the `Idempotency-Key`
header are read here, and the routes document them in their OpenAPI (`routes.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Generic, NamedTuple, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError

from command_api.decoding import decode_batch_body, decode_transaction_body, read_body
from command_api.idempotency import (
    HEADER,
    IdempotencyKeyError,
    parse_idempotency_key,
    reconcile,
)
from command_api.models import ValidationContext
from command_api.services import (
    Clock,
    RecordTransaction,
    TransactionBatch,
    TransactionRecorder,
)
from shared.auth import SCOPE_WRITE, TokenVerifier, authorize
from shared.web import AppServices

CommandT = TypeVar("CommandT")


@dataclass(frozen=True, slots=True)
class CommandServices:
    """Everything a request of the command API needs, built once by `create_app`."""

    verifier: TokenVerifier
    clock: Clock
    max_clock_skew: timedelta
    recorder: TransactionRecorder


class Write(NamedTuple, Generic[CommandT]):
    """An authenticated write request: its producer, its command(s), who records them."""

    producer: str
    command: CommandT
    recorder: TransactionRecorder


_services = AppServices(CommandServices)


def install_services(app: FastAPI, services: CommandServices) -> None:
    """Hand `services` to every request of `app` (called by the composition root)."""
    _services.install(app, services)


def _authorized(request: Request) -> tuple[CommandServices, str]:
    services = _services.of(request.app)
    principal = authorize(services.verifier, request.headers.get("authorization"), SCOPE_WRITE)
    return services, principal.subject


def _context(services: CommandServices) -> ValidationContext:
    return ValidationContext(now=services.clock(), max_clock_skew=services.max_clock_skew)


# `async`: FastAPI runs a plain `def` dependency in its thread pool (a thread hop per request)
async def transaction_write(request: Request) -> Write[RecordTransaction]:
    """`POST /transactions`: its body is read only once the caller is authenticated. An
    `Idempotency-Key` header supplies or must equal the command's `transaction_id`."""
    services, producer = _authorized(request)
    header = request.headers.get(HEADER)
    errors: list[dict[str, object]] = []
    key = None
    if header is not None:
        try:
            key = parse_idempotency_key(header)
        except IdempotencyKeyError as err:
            errors.append(err.as_error())
    try:
        command = decode_transaction_body(await read_body(request), _context(services))
    except RequestValidationError as err:
        raise RequestValidationError([*err.errors(), *errors]) from err
    if errors:
        raise RequestValidationError(errors)
    if key is not None:
        try:
            transaction_id = reconcile(command.transaction_id, key)
        except IdempotencyKeyError as err:
            raise RequestValidationError([err.as_error()]) from err
        command = command._replace(transaction_id=transaction_id)
    return Write(producer, command, services.recorder)


async def batch_write(request: Request) -> Write[TransactionBatch]:
    """`POST /transactions/batch`: its body is read only once the caller is authenticated.
    Items carry their own ids: an `Idempotency-Key` header is refused, not ignored."""
    services, producer = _authorized(request)
    if HEADER in request.headers:
        error = IdempotencyKeyError(
            "idempotency_key_not_allowed",
            f"{HEADER} names one transaction: give each batch item its transaction_id",
        )
        raise RequestValidationError([error.as_error()])
    batch = decode_batch_body(await read_body(request), _context(services))
    return Write(producer, batch, services.recorder)


TransactionWrite = Annotated[Write[RecordTransaction], Depends(transaction_write)]
BatchWrite = Annotated[Write[TransactionBatch], Depends(batch_write)]
