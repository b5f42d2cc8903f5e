"""`PrometheusStreamMetrics`: the stats stream's gauges and counters, on the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PrometheusStreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._clients = Gauge(
            "stats_stream_clients", "Connected /stats/stream clients", registry=registry
        )
        self._reads = Counter(
            "stats_stream_reads",
            "Snapshot reads made for the streams (shared by every client)",
            ["kind"],
            registry=registry,
        )
        self._dropped = Counter(
            "stats_stream_dropped_clients",
            "Stream clients dropped because they stopped reading",
            registry=registry,
        )

    def stream_clients(self, count: int) -> None:
        self._clients.set(count)

    def stream_read(self, window: int | None) -> None:
        self._reads.labels("all_time" if window is None else "window").inc()

    def stream_dropped(self) -> None:
        self._dropped.inc()
