"""The whole path: command API -> Kafka -> projector process -> PostgreSQL -> query API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.command_support import running_app
from tests.integration.conftest import TopicFactory
from tests.integration.support import query_client, running_projector
from tests.unit.command_kit import bearer


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_read_your_writes_all_time_and_windows(
    kafka_settings: TopicFactory, database_url: str, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    now = datetime.now(UTC)
    async with (
        running_projector(kafka, database_url, tmp_path / "projector.log"),
        running_app(kafka) as (_, command),
        query_client(database_url) as query,
    ):
        posted = await command.post(
            "/transactions",
            content=json.dumps({"amount": "12.34", "timestamp": stamp(now)}),
            headers=bearer(),
        )
        assert posted.status_code == 201, posted.text
        token = posted.json()["consistency_token"]
        read = await query.get("/stats", params={"consistency_token": token, "wait_ms": 10_000})
        assert read.status_code == 200, read.text
        assert {k: read.json()[k] for k in ("count", "sum", "avg", "max", "min")} == {
            "count": 1,
            "sum": "12.34",
            "avg": "12.34",
            "max": "12.34",
            "min": "12.34",
        }

        items = [{"amount": "0.10", "timestamp": stamp(now)} for _ in range(99)]
        items.append({"amount": "500.00", "timestamp": stamp(now - timedelta(hours=2))})
        batch = await command.post(
            "/transactions/batch", content=json.dumps({"transactions": items}), headers=bearer()
        )
        assert batch.status_code == 201, batch.text
        token = batch.json()["consistency_token"]
        params = {"consistency_token": token, "wait_ms": 10_000}
        everything = (await query.get("/stats", params=params)).json()
        recent = (await query.get("/stats", params={**params, "window": 60})).json()

    assert everything["count"] == 101
    assert everything["sum"] == "522.24"  # 12.34 + 99 * 0.10 + 500.00, exactly
    assert everything["max"] == "500.00"
    assert recent["count"] == 100  # the two-hour-old transaction is outside the window
    assert recent["sum"] == "22.24"
    assert recent["max"] == "12.34"
    assert recent["min"] == "0.10"
