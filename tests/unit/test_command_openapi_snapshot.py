"""The command API's OpenAPI document is a contract for clients (and the client package is
generated against it): it changes only on purpose. The test compares it with the committed
snapshot; a deliberate change regenerates the snapshot with
`TXSTATS_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_command_openapi_snapshot.py`
and commits it with the change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.unit.command_kit import client_for, make_app

SNAPSHOT = Path(__file__).parent / "snapshots" / "command_openapi.json"


async def test_the_openapi_document_is_the_committed_snapshot() -> None:
    async with client_for(make_app(InMemoryEventPublisher())) as client:
        document = (await client.get("/openapi.json")).json()
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if os.environ.get("TXSTATS_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(text)
    assert json.loads(SNAPSHOT.read_text()) == document, (
        f"the command API's OpenAPI document differs from {SNAPSHOT.name}; if that is meant, "
        "regenerate it (see this module's docstring) and commit it"
    )


@pytest.mark.parametrize(
    ("max_body_bytes", "said"),
    [
        (1024 * 1024, "1 MiB"),
        (64 * 1024, "64 KiB"),
        (3 * 1024 * 1024, "3 MiB"),
        (5000, "5000 bytes"),
    ],
)
async def test_the_413_says_the_configured_body_limit(max_body_bytes: int, said: str) -> None:
    app = make_app(InMemoryEventPublisher(), max_body_bytes=max_body_bytes)
    async with client_for(app) as client:
        document = (await client.get("/openapi.json")).json()
    for path in ("/transactions", "/transactions/batch"):
        description = document["paths"][path]["post"]["responses"]["413"]["description"]
        assert description == f"The body exceeds {said} (refused before it is read whole)."
