"""The observability profile without a Docker engine: the Prometheus config, the Grafana
provisioning and dashboard are well formed, every metric a panel queries is one our services
export, every job a panel names is scraped, and only the profile starts them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from command_api.metrics import CommandMetrics
from projector.metrics import ProjectorMetrics
from query_api.adapters.prometheus_metrics import PrometheusStatsMetrics
from query_api.adapters.prometheus_stream_metrics import PrometheusStreamMetrics
from shared.web import http_latency_histogram

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "txstats.json"
PROMQL_WORDS = {"sum", "rate", "by", "max", "histogram_quantile", "le", "job", "route"}
LABELS = {"reason", "partition"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series() -> set[str]:
    """Every series name the three services can export (from their real metric classes)."""
    registry = CollectorRegistry()
    CommandMetrics(registry)
    ProjectorMetrics(registry)
    PrometheusStatsMetrics(registry)
    PrometheusStreamMetrics(registry)
    http_latency_histogram(registry)
    names = set()
    for family in registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_every_queried_metric_is_exported() -> None:
    exported = exported_series()
    unknown = set()
    for expr in expressions():
        without_strings = re.sub(r'"[^"]*"', "", expr)
        without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
        for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_ranges):
            if word not in PROMQL_WORDS | LABELS and word not in exported:
                unknown.add(word)
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"


def test_the_dashboard_covers_what_the_issue_lists() -> None:
    queried = " ".join(expressions())
    for series in (
        "transactions_accepted_total",
        "http_request_duration_seconds_bucket",
        "event_publish_failures_total",
        "projector_events_folded_total",
        "projector_lag",
        "projector_duplicate_events_total",
        "projector_poison_events_total",
        "stats_stream_clients",
    ):
        assert series in queried


def test_panels_name_only_scraped_jobs_and_the_provisioned_datasource() -> None:
    config = load_yaml(OBSERVABILITY / "prometheus.yml")
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"command-api", "query-api", "projector"}
    for expr in expressions():
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in jobs
    datasources = load_yaml(OBSERVABILITY / "grafana/provisioning/datasources/prometheus.yml")
    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]


def test_scrape_targets_are_the_compose_services_and_ports() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")
    services = compose["services"]
    config = load_yaml(OBSERVABILITY / "prometheus.yml")
    ports = {"command-api": 8000, "query-api": 8001, "projector": 8002}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                assert host in services
                assert int(port) == ports[host]
        for sd in job.get("dns_sd_configs", []):
            assert sd["port"] == ports[job["job_name"]]
            assert all(name in services for name in sd["names"])


@pytest.mark.parametrize("service", ["prometheus", "grafana"])
def test_observability_services_start_only_with_their_profile(service: str) -> None:
    services = load_yaml(ROOT / "docker-compose.yml")["services"]
    assert services[service]["profiles"] == ["observability"]
    for volume in services[service]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
    default = [name for name, spec in services.items() if "profiles" not in spec]
    assert service not in default
    assert {"command-api", "query-api", "projector", "kafka", "postgres"} <= set(default)
