"""The event log unreachable or incomplete: 503 within the publish timeout, nothing appended,
and recovery without restarting the API.

The shared broker is never stopped (other suites use it). Instead: a bootstrap address where
nothing listens; a topic that does not exist yet (created mid-test); and a bootstrap address
that starts answering mid-test (a TCP forwarder to the real broker).
"""

from __future__ import annotations

import time
import uuid

import httpx

from command_api.adapters.kafka_publisher import KafkaEventPublisher
from shared.settings import CommandSettings, KafkaSettings
from shared.topic import ensure_topic
from tests.integration.command_support import (
    TcpForwarder,
    end_offsets,
    free_port,
    read_all,
    running_app,
)
from tests.integration.conftest import TopicFactory
from tests.integration.support import wait_until
from tests.unit.command_kit import bearer

TIMEOUT = 1.0
MARGIN = 0.75  # scheduling slack on a busy test machine


def content(transaction_id: str) -> bytes:
    return (
        f'{{"amount": "5.00", "timestamp": "2026-01-01T00:00:00Z",'
        f' "transaction_id": "{transaction_id}"}}'
    ).encode()


async def post(client: httpx.AsyncClient, transaction_id: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post("/transactions", content=content(transaction_id), headers=bearer())
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/event-log-unavailable")


async def test_no_broker_at_the_address_is_a_fast_503(kafka_settings: TopicFactory) -> None:
    real = await kafka_settings()
    dead = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic=real.topic)
    async with running_app(dead, publish_timeout_seconds=TIMEOUT) as (_, client):
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/ready")
        single, elapsed = await post(client, "dead-1")
        batch = await client.post(
            "/transactions/batch",
            content=b'{"transactions": [{"amount": 1, "timestamp": "2026-01-01T00:00:00Z"}]}',
            headers=bearer(),
        )
        metrics = (await client.get("/metrics")).text

    assert ready.status_code == 503
    assert ready.json()["errors"] == [{"dependency": "kafka", "error": "EventLogNotReadyError"}]
    assert_unavailable(single)
    assert_unavailable(batch)
    assert elapsed < TIMEOUT + MARGIN
    assert 'event_publish_failures_total{reason="not_connected"} 2.0' in metrics
    assert sum((await end_offsets(real)).values()) == 0


async def test_an_unknown_topic_is_a_503_within_the_timeout_then_recovers(
    kafka_bootstrap: str,
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic=f"test.{uuid.uuid4().hex[:12]}"
    )
    publisher = KafkaEventPublisher(
        settings,
        CommandSettings(publish_timeout_seconds=TIMEOUT, producer_linger_ms=2),
        create_topic=False,
    )
    await publisher.start()
    try:
        async with running_app(settings, publisher=publisher) as (_, client):
            refused, elapsed = await post(client, "lost-1")
            assert_unavailable(refused)
            assert elapsed < TIMEOUT + MARGIN
            assert (await client.get("/ready")).status_code == 503

            await ensure_topic(settings)  # the topic appears; the API is not restarted
            accepted, _ = await post(client, "kept-1")
            assert accepted.status_code == 201, accepted.text
            assert (await client.get("/ready")).status_code == 200
    finally:
        await publisher.stop()

    records = await read_all(settings)
    assert [record.key for record in records] == [b"kept-1"]  # the 503'd one never landed


async def test_a_broker_that_becomes_reachable_is_used_without_restart(
    kafka_settings: TopicFactory, kafka_bootstrap: str
) -> None:
    real = await kafka_settings()
    forwarder = TcpForwarder(free_port(), kafka_bootstrap)
    late = KafkaSettings(bootstrap_servers=f"127.0.0.1:{forwarder.port}", topic=real.topic)
    try:
        async with running_app(late, publish_timeout_seconds=TIMEOUT) as (_, client):
            refused, _ = await post(client, "early-1")
            assert_unavailable(refused)

            await forwarder.start()
            answers: list[httpx.Response] = []

            async def accepted() -> bool:
                response, _ = await post(client, f"late-{len(answers)}")
                answers.append(response)
                return response.status_code == 201

            await wait_until(accepted, timeout=30, interval=0.25)
            assert {a.status_code for a in answers} <= {201, 503}
            assert (await client.get("/ready")).status_code == 200
    finally:
        await forwarder.stop()

    keys = [record.key for record in await read_all(real)]
    assert keys == [f"late-{len(answers) - 1}".encode()]
