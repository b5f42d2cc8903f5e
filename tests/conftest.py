"""Session-wide: say first which infrastructure the run's tests use."""

from __future__ import annotations

import pytest

from tests.integration import infra

NEEDS_SERVICES = ("tests/integration/", "tests/faults/")


def pytest_collection_finish(session: pytest.Session) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    paths = {item.nodeid.split("::", 1)[0] for item in session.items}
    if any(path.startswith("tests/integration/") for path in paths):
        reporter.write_line(f"integration tests: Kafka and PostgreSQL from {infra.describe()}")
    if any(path.startswith("tests/faults/") for path in paths):
        reporter.write_line(
            "fault tests: their own private Kafka and PostgreSQL (scripts/stack.sh, "
            "STACK_DIR=.local/faults), services as real processes"
        )
    if not any(path.startswith(NEEDS_SERVICES) for path in paths):
        reporter.write_line("unit tests only: no Kafka, no PostgreSQL")
