"""`PrometheusStatsMetrics`: the query API's counters, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from query_api.ports import StatsKind, WaitOutcome


class PrometheusStatsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "stats_requests",
            "Stats requests by kind (all_time, window, consistency)",
            ["kind"],
            registry=registry,
        )
        self._waits = Counter(
            "stats_consistency_waits",
            "Consistency-token waits by outcome (hit: covered in time; timeout: 503)",
            ["outcome"],
            registry=registry,
        )
        self._wait_seconds = Histogram(
            "stats_consistency_wait_seconds",
            "How long consistency-token requests waited for the projection",
            ["outcome"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        for kind in ("all_time", "window", "consistency"):
            self._requests.labels(kind)
        for outcome in ("hit", "timeout"):
            self._waits.labels(outcome)

    def stats_request(self, kind: StatsKind) -> None:
        self._requests.labels(kind).inc()

    def consistency_wait(self, outcome: WaitOutcome, seconds: float) -> None:
        self._waits.labels(outcome).inc()
        self._wait_seconds.labels(outcome).observe(seconds)
