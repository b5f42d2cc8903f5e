"""The projector's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_folded = Counter(
            "projector_events_folded", "Transactions folded into the projection", registry=registry
        )
        self.duplicates = Counter(
            "projector_duplicate_events",
            "Events skipped as repeated transaction ids",
            registry=registry,
        )
        self.conflicts = Counter(
            "projector_conflicting_duplicates",
            "Repeated transaction ids whose amount or occurred_at differ from the counted one",
            registry=registry,
        )
        self.poison = Counter(
            "projector_poison_events", "Undecodable events skipped", registry=registry
        )
        self.refused = Counter(
            "projector_refused_records",
            "Records the store refused (a value it cannot hold), stored as poison",
            registry=registry,
        )
        self.late = Counter(
            "projector_late_events",
            "Folded events whose event time was older than the longest window (1 h)",
            registry=registry,
        )
        self.retries = Counter(
            "projector_retries",
            "Batches retried after a transient error",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "projector_batch_size",
            "Records per batch",
            registry=registry,
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000),
        )
        self.fold_seconds = Histogram(
            "projector_fold_seconds",
            "Time to decode, fold and commit one batch",
            registry=registry,
        )
        self.lag = Gauge(
            "projector_lag",
            "Log end offset minus stored next offset",
            ["partition"],
            registry=registry,
        )
