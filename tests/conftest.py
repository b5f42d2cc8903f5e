"""Session-wide: every test id is unique, and each run says first which infrastructure its
tests use."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration import infra

NEEDS_SERVICES = ("tests/integration/", "tests/faults/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse duplicate test ids: pytest would run both under one name, and its progress
    would stop short of 100 %."""
    repeated = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    if repeated:
        raise pytest.UsageError("duplicate test ids: " + ", ".join(sorted(repeated)[:10]))


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
