"""FastAPI dependencies of the command API: what the composition root built, handed to routes,
and the request bodies, parsed exactly and validated after authentication."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, cast

from fastapi import Depends, Request

from command_api.body import read_json, validate
from command_api.models import TransactionBatchRequest, TransactionRequest, ValidationContext
from command_api.services import Clock, TransactionService
from shared.auth import SCOPE_WRITE, Principal, require_scope
from shared.settings import CommandSettings


async def get_service(request: Request) -> TransactionService:
    # `async`: FastAPI runs a plain `def` dependency in its thread pool (a thread hop per request)
    return cast(TransactionService, request.app.state.transaction_service)


authenticate_writer = require_scope(SCOPE_WRITE)

Writer = Annotated[Principal, Depends(authenticate_writer)]
Service = Annotated[TransactionService, Depends(get_service)]


def _context(request: Request) -> ValidationContext:
    clock = cast(Clock, request.app.state.clock)
    settings = cast(CommandSettings, request.app.state.command_settings)
    return ValidationContext(
        now=clock(), max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds)
    )


async def transaction_body(request: Request, _: Writer) -> TransactionRequest:
    """The body of `POST /transactions`; read only once the caller is authenticated."""
    return validate(TransactionRequest, await read_json(request), context=_context(request))


async def batch_body(request: Request, _: Writer) -> TransactionBatchRequest:
    """The body of `POST /transactions/batch`; read only once the caller is authenticated."""
    return validate(TransactionBatchRequest, await read_json(request), context=_context(request))


TransactionBody = Annotated[TransactionRequest, Depends(transaction_body)]
BatchBody = Annotated[TransactionBatchRequest, Depends(batch_body)]
