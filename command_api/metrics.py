"""The command API's Prometheus metrics, on the app's own registry.

- `transactions_accepted_total`: events the log acknowledged (a batch adds its size).
- `transaction_requests_rejected_total{reason}`: POSTs refused with a 4xx, by reason.
- `event_publish_failures_total{reason}`: publishes that ended in a 503
  (`not_connected`, `timeout`, `rejected`).
- `event_publish_duration_seconds`: time from handing events to the log until all are acked.
Request latency is `http_request_duration_seconds` from `shared.web`. Who counts:
`instrumented_publisher.py` (publishes) and `shared.web.RequestEdge` (refused requests, through
`count_refusal`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

TRANSACTION_PATHS = "/transactions"
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

    def count_refusal(self, path: str, status: int) -> None:
        """A 4xx answer (`shared.web.RefusalCounter`): counted for the transaction routes."""
        if path.startswith(TRANSACTION_PATHS):
            self.rejected.labels(REJECTION_REASONS.get(status, f"http_{status}")).inc()
