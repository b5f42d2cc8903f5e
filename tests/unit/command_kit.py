"""Test helpers for the command API: hermetic configuration, tokens, an in-process client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from pydantic import SecretStr

from command_api.config import CommandConfig
from command_api.main import create_app
from command_api.ports import EventPublisher
from shared.auth import SCOPE_WRITE
from shared.settings import (
    ClockSkewSettings,
    CommandSettings,
    JwtSettings,
    KafkaSettings,
    LogSettings,
)

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
JSON = {"content-type": "application/json"}


def fixed_clock() -> datetime:
    return NOW


def jwt_settings(**overrides: Any) -> JwtSettings:
    values: dict[str, Any] = {
        "secret": SecretStr(SECRET),
        "public_key": None,
        "audience": None,
        "issuer": None,
        "leeway_seconds": 0,
    }
    values.update(overrides)
    return JwtSettings(**values)


def command_config(
    *,
    jwt: JwtSettings | None = None,
    kafka: KafkaSettings | None = None,
    publish_timeout_seconds: float = 5.0,
    max_clock_skew_seconds: float = 5.0,
    max_body_bytes: int = 1024 * 1024,
) -> CommandConfig:
    return CommandConfig(
        kafka=kafka or KafkaSettings(bootstrap_servers="127.0.0.1:9092", topic="unit.unused"),
        clock_skew=ClockSkewSettings(max_clock_skew_seconds=max_clock_skew_seconds),
        command=CommandSettings(
            publish_timeout_seconds=publish_timeout_seconds,
            max_body_bytes=max_body_bytes,
            producer_linger_ms=2,
        ),
        jwt=jwt or jwt_settings(),
        log=LogSettings(log_level="INFO"),
    )


def token(
    *,
    subject: str = "producer-1",
    scopes: str = SCOPE_WRITE,
    key: Any = SECRET,
    algorithm: str = "HS256",
    lifetime: int = 86_400,  # a day: tables of tokens are minted at collection, long before use
    **claims: Any,
) -> str:
    now = int(datetime.now(UTC).timestamp())
    body: dict[str, Any] = {"sub": subject, "scope": scopes, "iat": now, "exp": now + lifetime}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm)


def bearer(value: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {value or token()}", **JSON}


def body(**fields: Any) -> bytes:
    payload = {"amount": "12.34", "timestamp": "2026-11-26T11:59:00Z"}
    payload.update(fields)
    return json.dumps({k: v for k, v in payload.items() if v is not None}).encode()


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://command.test") as client:
        yield client


def make_app(publisher: EventPublisher, **config: Any) -> FastAPI:
    return create_app(command_config(**config), publisher=publisher, clock=fixed_clock)
