"""HTTP plumbing both APIs share: request ids, body size limit, latency metrics and the
operational endpoints `/health`, `/ready` and `/metrics`."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.docs import install_docs
from shared.errors import INTERNAL, PROBLEM_JSON, Problem, problem_response
from shared.logs import request_id_var

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
READY_CHECK_TIMEOUT_SECONDS = 2.0

ReadyCheck = Callable[[], Awaitable[None]]

T = TypeVar("T")

PAYLOAD_TOO_LARGE = Problem(413, "payload-too-large", "Payload too large")
NOT_READY = Problem(503, "not-ready", "Service not ready", {"Retry-After": "1"})


class AppServices(Generic[T]):
    """A typed object a composition root builds (a container of services, or one service),
    kept on its app under its type and read back with that type checked, so nothing reads
    `app.state` untyped. An app holds one object of each type: a feature can own the
    dependency that hands its service to its routes."""

    def __init__(self, kind: type[T]) -> None:
        self._kind = kind
        self._slot = f"services:{kind.__module__}.{kind.__qualname__}"

    def install(self, app: Starlette, services: T) -> None:
        setattr(app.state, self._slot, services)

    def of(self, app: Starlette) -> T:
        services = getattr(app.state, self._slot, None)
        if not isinstance(services, self._kind):
            msg = f"the app holds no {self._kind.__name__}: build it with its create_app"
            raise RuntimeError(msg)
        return services


class RequestContextMiddleware:
    """Echo (or mint) `X-Request-ID`, expose it to logs, and time every request."""

    def __init__(self, app: ASGIApp, *, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Answer here rather than in Starlette's outermost error middleware, so that even
            # a 500 carries the request id; the stack trace goes to the log, never the client.
            if response_started:
                raise
            logger.error(
                "unhandled error on %s %s",
                scope["method"],
                scope["path"],
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            await problem_response(INTERNAL, "An unexpected error occurred.")(
                scope, receive, send_with_id
            )
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.latency.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - started
            )
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, by Content-Length or while streaming, so an
    oversized body is never read whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"The request body exceeds {self.max_bytes} bytes."
        await problem_response(PAYLOAD_TOO_LARGE, detail, headers={"Connection": "close"})(
            scope, receive, send
        )


def http_latency_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "http_request_duration_seconds",
        "HTTP request latency by route and status",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )


NOT_READY_DOC: dict[str, Any] = {
    "description": "A dependency does not answer (`errors` names each one), with `Retry-After`",
    "content": {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail", "errors"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["dependency", "error"],
                            "properties": {
                                "dependency": {"type": "string"},
                                "error": {"type": "string"},
                            },
                        },
                    },
                },
            }
        }
    },
}


def ops_router(*, registry: CollectorRegistry, checks: Mapping[str, ReadyCheck]) -> APIRouter:
    """`/health` (liveness), `/ready` (every dependency answers) and `/metrics`."""
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="Readiness: every dependency answers",
        response_model=None,
        responses={503: NOT_READY_DOC},
    )
    async def ready() -> JSONResponse | dict[str, object]:
        failed: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), READY_CHECK_TIMEOUT_SECONDS)
            except Exception as err:  # noqa: BLE001 - any failure means "not ready"
                logger.warning("readiness check %s failed: %s", name, type(err).__name__)
                failed[name] = type(err).__name__
        if failed:
            detail = "Unavailable: " + ", ".join(sorted(failed))
            return problem_response(
                NOT_READY, detail, errors=[{"dependency": k, "error": v} for k, v in failed.items()]
            )
        return {"status": "ready", "checks": dict.fromkeys(checks, "ok")}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def install_common(
    app: FastAPI,
    *,
    registry: CollectorRegistry,
    checks: Mapping[str, ReadyCheck],
    max_body_bytes: int,
) -> None:
    app.include_router(ops_router(registry=registry, checks=checks))
    install_docs(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(RequestContextMiddleware, latency=http_latency_histogram(registry))
