"""Baseline apps, served by the same uvicorn settings as the real services.

- `lean_command_app`: `POST /transactions` as a lean FastAPI endpoint would write it, durable
  like ours: one async dependency checking the bearer token with PyJWT (verified tokens
  cached by their exact string until `exp`), the body decoded by msgspec into a Struct, the
  amount checked as a `Decimal` and the timestamp as an aware datetime, the event encoded by
  msgspec, `send_and_wait` on an acks=all idempotent aiokafka producer (on its own topic),
  the 201 encoded by msgspec. The single-POST denominator: what the stack costs for the job.
- `bare_asgi_app`: a bare ASGI app answering every POST with a constant 201: the floor of
  Python HTTP here, below any framework.
- `noop_command_app`: `POST /transactions` and `POST /transactions/batch` with the command
  API's own dependencies (its `CommandServices`, with a publisher that is never called), so
  the same JWT check (scope `transactions:write`) and the same decoding and validation of
  the body into commands, then 201 with a constant body: nothing is published. The real
  endpoint's cost over this one is the event log (and its response).
- `noop_stats_app`: `GET /stats` returning a constant JSON document of the real answer's shape,
  from a bare FastAPI route: the floor for any read endpoint on this stack.

`uvicorn --factory bench.baselines:lean_command_app` (and `:bare_asgi_app`,
`:noop_command_app`, `:noop_stats_app`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import jwt
import msgspec
from aiokafka import AIOKafkaProducer
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from starlette.types import Receive, Scope, Send

from command_api.deps import BatchWrite, CommandServices, TransactionWrite, install_services
from command_api.ports import Position
from command_api.services import TransactionRecorder
from shared.auth import JwtVerifier, VerifiedTokens
from shared.events import TransactionRecorded
from shared.settings import ClockSkewSettings, JwtSettings, KafkaSettings

ACCEPTED: dict[str, Any] = {"status": "accepted"}

STATS: dict[str, Any] = {
    "count": 1_000_000,
    "sum": "5000123456.78",
    "avg": "5000.12",
    "max": "10000.00",
    "min": "0.01",
    "as_of": {
        "version": 1,
        "offsets": {str(p): 166_667 for p in range(6)},
        "lag": {str(p): 0 for p in range(6)},
        "total_lag": 0,
        "server_time": "2026-11-26T12:00:00Z",
        "window": None,
    },
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _UnusedPublisher:
    """The `EventPublisher` of the no-op routes, which never record anything."""

    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        msg = "the no-op command app publishes nothing"
        raise RuntimeError(msg)

    async def publish_serialized(
        self, keys: Sequence[bytes], values: Sequence[bytes]
    ) -> list[Position]:
        return await self.publish([])

    async def check_ready(self) -> None:
        return None


def noop_command_app() -> FastAPI:
    app = FastAPI(title="bench: no-op command endpoint")
    install_services(
        app,
        CommandServices(
            verifier=VerifiedTokens(JwtVerifier(JwtSettings())),
            clock=_utc_now,
            max_clock_skew=timedelta(seconds=ClockSkewSettings().max_clock_skew_seconds),
            recorder=TransactionRecorder(publisher=_UnusedPublisher(), clock=_utc_now),
        ),
    )

    @app.post("/transactions", status_code=201)
    async def record(_: TransactionWrite) -> dict[str, Any]:
        return ACCEPTED

    @app.post("/transactions/batch", status_code=201)
    async def record_batch(_: BatchWrite) -> dict[str, Any]:
        return ACCEPTED

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    return app


def noop_stats_app() -> FastAPI:
    app = FastAPI(title="bench: constant stats endpoint")

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return STATS

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    return app


# --- the lean endpoint


class _LeanTransaction(msgspec.Struct, forbid_unknown_fields=True):
    amount: Decimal
    timestamp: datetime
    transaction_id: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9._:-]{1,64}$")] | None = None


_LEAN_MAX_AMOUNT = Decimal(10) ** 12
_LEAN_CENT = Decimal("0.01")
_LEAN_TOKENS = 10_000
_lean_decode = msgspec.json.Decoder(_LeanTransaction).decode
_lean_encode = msgspec.json.Encoder().encode


def lean_command_app() -> FastAPI:
    settings, kafka = JwtSettings(), KafkaSettings()
    secret = settings.secret.get_secret_value()
    skew = timedelta(seconds=ClockSkewSettings().max_clock_skew_seconds)
    verified: dict[str, tuple[str, float]] = {}  # token -> (subject, exp)
    producer: dict[str, AIOKafkaProducer] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        producer["it"] = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True
        )
        await producer["it"].start()
        try:
            yield
        finally:
            await producer["it"].stop()

    async def writer(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401)
        known = verified.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        try:
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.PyJWTError as err:
            raise HTTPException(401) from err
        if "transactions:write" not in str(claims.get("scope", "")).split():
            raise HTTPException(403)
        if len(verified) >= _LEAN_TOKENS:
            verified.clear()
        verified[token] = (claims["sub"], float(claims["exp"]))
        return str(claims["sub"])

    app = FastAPI(title="bench: lean durable command endpoint", lifespan=lifespan)

    @app.post("/transactions", status_code=201)
    async def record(
        request: Request,
        producer_name: str = Depends(writer),
    ) -> Response:
        try:
            item = _lean_decode(await request.body())
        except msgspec.DecodeError as err:
            raise HTTPException(400) from err
        amount, occurred_at = item.amount, item.timestamp
        if not (amount.is_finite() and 0 < amount <= _LEAN_MAX_AMOUNT):
            raise HTTPException(422)
        if amount != amount.quantize(_LEAN_CENT):
            raise HTTPException(422)
        if occurred_at.tzinfo is None or occurred_at > datetime.now(UTC) + skew:
            raise HTTPException(422)
        event_id = uuid.uuid4()
        transaction_id = item.transaction_id or str(uuid.uuid4())
        event = _lean_encode(
            {
                "event_id": event_id,
                "event_type": "TransactionRecorded",
                "schema_version": 1,
                "transaction_id": transaction_id,
                "amount": amount.quantize(_LEAN_CENT),
                "occurred_at": occurred_at.astimezone(UTC),
                "recorded_at": datetime.now(UTC),
                "producer": producer_name,
            }
        )
        sent = await producer["it"].send_and_wait(kafka.topic, event, key=transaction_id.encode())
        body = {
            "transaction_id": transaction_id,
            "event_id": event_id,
            "position": {"partition": sent.partition, "offset": sent.offset},
        }
        return Response(_lean_encode(body), status_code=201, media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    return app


# --- the floor

_FLOOR_BODY = b'{"status":"accepted"}'
_FLOOR_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_FLOOR_BODY)).encode()),
]


async def _floor(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    status = 201 if scope["method"] == "POST" else 200
    await send({"type": "http.response.start", "status": status, "headers": _FLOOR_HEADERS})
    await send({"type": "http.response.body", "body": _FLOOR_BODY})


def bare_asgi_app() -> Any:
    return _floor
