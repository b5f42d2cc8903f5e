"""HTTP plumbing both APIs share: request ids, body size limit, latency metrics and the
operational endpoints `/health`, `/ready` and `/metrics`."""

from __future__ import annotations

import asyncio
import itertools
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
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode()
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


RefusalCounter = Callable[[str, int], None]
"""Called with the path and the status of every 4xx answer (e.g. to count them by reason)."""


class _BodyTooLarge(Exception):
    pass


class RequestEdge:
    """The one ASGI layer every request passes, doing in one call what would otherwise be a
    middleware each (a call, a `send` wrapper and a header scan per request each):

    - echo (or mint) `X-Request-ID`, expose it to logs, answer an unhandled error with a 500
      problem that carries it (the stack trace goes to the log, never to the client);
    - time every request (`http_request_duration_seconds` by route and status);
    - refuse bodies over `max_body_bytes` with 413, by Content-Length before reading, or
      while streaming a body sent without one (the HTTP parser holds a declared body to its
      length), so an oversized body is never read whole;
    - report every 4xx answer to `refusals`, when given."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        latency: Histogram,
        max_body_bytes: int,
        refusals: RefusalCounter | None = None,
    ) -> None:
        self.app = app
        self.latency = latency
        self.max_body_bytes = max_body_bytes
        self.refusals = refusals
        self._timers: dict[tuple[str, str, int], Any] = {}
        # Minted request ids: a random prefix per process and a counter, not a UUID per
        # request (a system call each); as long as a UUID's hex, unique across processes.
        self._prefix = uuid.uuid4().hex[:16]
        self._minted = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, declared = self._read_headers(scope)
        token = request_id_var.set(request_id)
        id_header = (REQUEST_ID_HEADER_BYTES, request_id.encode())
        status = 500
        response_started = False

        async def edge_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), id_header]
                if 400 <= status < 500 and self.refusals is not None:
                    self.refusals(scope["path"], status)
            await send(message)

        try:
            if declared is not None:
                if not declared.isdigit() or int(declared) > self.max_body_bytes:
                    await self._too_large(scope, receive, edge_send)
                    return
                await self.app(scope, receive, edge_send)
            else:
                await self.app(scope, self._counting(receive), edge_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await self._too_large(scope, receive, edge_send)
        except Exception as exc:
            if response_started:
                raise
            logger.error(
                "unhandled error on %s %s",
                scope["method"],
                scope["path"],
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            await problem_response(INTERNAL, "An unexpected error occurred.")(
                scope, receive, edge_send
            )
        finally:
            self._observe(scope, status, time.perf_counter() - started)
            request_id_var.reset(token)

    def _read_headers(self, scope: Scope) -> tuple[str, bytes | None]:
        """The request id (the client's when valid, else a new one) and Content-Length."""
        request_id = declared = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        if request_id is None or not _VALID_REQUEST_ID.match(request_id):
            request_id = f"{self._prefix}{next(self._minted):016x}"
        return request_id, declared

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        key = (scope["method"], route, status)
        timer = self._timers.get(key)
        if timer is None:  # a labelled child per (method, route, status), looked up once
            timer = self._timers[key] = self.latency.labels(key[0], route, str(status))
        timer.observe(seconds)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        return counting_receive

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"The request body exceeds {self.max_body_bytes} bytes."
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
    refusals: RefusalCounter | None = None,
) -> None:
    """The operational routes, the offline docs and the `RequestEdge` around every request."""
    app.include_router(ops_router(registry=registry, checks=checks))
    install_docs(app)
    app.add_middleware(
        RequestEdge,
        latency=http_latency_histogram(registry),
        max_body_bytes=max_body_bytes,
        refusals=refusals,
    )
