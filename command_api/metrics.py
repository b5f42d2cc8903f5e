"""The command API's Prometheus metrics, on the app's own registry.

- `transactions_accepted_total`: events the log acknowledged (a batch adds its size).
- `transaction_requests_rejected_total{reason}`: POSTs refused with a 4xx, by reason.
- `event_publish_failures_total{reason}`: publishes that ended in a 503
  (`not_connected`, `timeout`, `rejected`).
- `event_publish_duration_seconds`: time from handing events to the log until all are acked.
Request latency is `http_request_duration_seconds` from `shared.web`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from command_api.ports import EventPublisher, Position, PublishFailedError
from shared.events import TransactionRecorded

REJECTION_REASONS = {
    400: "malformed_json",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


class CommandMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "transactions_accepted_total",
            "Transactions acknowledged by the event log",
            registry=registry,
        )
        self.rejected = Counter(
            "transaction_requests_rejected_total",
            "Transaction POSTs refused with a 4xx, by reason",
            ["reason"],
            registry=registry,
        )
        self.publish_failures = Counter(
            "event_publish_failures_total",
            "Publishes that failed (answered with 503), by reason",
            ["reason"],
            registry=registry,
        )
        self.publish_duration = Histogram(
            "event_publish_duration_seconds",
            "Time until the event log acknowledged a publish (acks=all)",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        for reason in REJECTION_REASONS.values():
            self.rejected.labels(reason)
        for failure in ("not_connected", "timeout", "rejected"):
            self.publish_failures.labels(failure)


class InstrumentedPublisher:
    """An `EventPublisher` that counts what the wrapped one does."""

    def __init__(self, inner: EventPublisher, metrics: CommandMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        started = time.perf_counter()
        try:
            positions = await self._inner.publish(events)
        except PublishFailedError as err:
            self._metrics.publish_failures.labels(err.reason).inc()
            raise
        self._metrics.publish_duration.observe(time.perf_counter() - started)
        self._metrics.accepted.inc(len(positions))
        return positions

    async def check_ready(self) -> None:
        await self._inner.check_ready()


class RejectionCounter:
    """ASGI middleware: count 4xx answers to the transaction routes, by reason. It sits
    outermost so that it also sees the 413 of the body-size limit."""

    def __init__(self, app: ASGIApp, *, metrics: CommandMetrics, path_prefix: str) -> None:
        self.app = app
        self.metrics = metrics
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                status = message["status"]
                reason = REJECTION_REASONS.get(status, f"http_{status}")
                self.metrics.rejected.labels(reason).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
