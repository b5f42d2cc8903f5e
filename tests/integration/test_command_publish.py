"""The command API against the real broker: what a 201 promises is in the log, exactly."""

from __future__ import annotations

import json

from shared.consistency import decode_token
from shared.events import deserialize
from tests.integration.command_support import end_offsets, read_all, read_record, running_app
from tests.integration.conftest import TopicFactory
from tests.unit.command_kit import bearer, token

SAME_ID = b'{"amount": 1, "timestamp": "2026-01-01T00:00:00Z", "transaction_id": "r"}'
HEADERS = {"event_type": b"TransactionRecorded", "schema_version": b"1"}


async def test_a_post_lands_at_the_returned_position(kafka_settings: TopicFactory) -> None:
    settings = await kafka_settings()
    content = (
        b'{"amount": 999999999999.99, "timestamp": "2026-01-02T03:04:05.5+01:00",'
        b' "transaction_id": "order-1"}'
    )
    async with running_app(settings) as (_, client):
        response = await client.post(
            "/transactions", content=content, headers=bearer(token(subject="shop-9"))
        )

    assert response.status_code == 201, response.text
    answer = response.json()
    partition, offset = answer["position"]["partition"], answer["position"]["offset"]
    record = await read_record(settings, partition, offset)
    assert record.key == b"order-1"
    assert dict(record.headers) == HEADERS
    value = json.loads(record.value)
    assert value["amount"] == "999999999999.99"
    assert value["occurred_at"] == "2026-01-02T02:04:05.500000Z"
    assert value["event_id"] == answer["event_id"]
    assert value["producer"] == "shop-9"
    assert deserialize(record.value).transaction_id == "order-1"
    assert decode_token(answer["consistency_token"]) == {partition: offset}
    assert sum((await end_offsets(settings)).values()) == 1


async def test_a_batch_lands_whole(kafka_settings: TopicFactory) -> None:
    settings = await kafka_settings()
    items = [
        {
            "amount": f"{i}.{i % 100:02d}",
            "timestamp": "2026-01-01T00:00:00Z",
            "transaction_id": f"b-{i}",
        }
        for i in range(1, 301)
    ]
    async with running_app(settings) as (_, client):
        response = await client.post(
            "/transactions/batch", content=json.dumps({"transactions": items}), headers=bearer()
        )

    assert response.status_code == 201, response.text
    answer = response.json()
    records = {(r.partition, r.offset): r for r in await read_all(settings)}
    assert len(records) == 300
    highest: dict[int, int] = {}
    for item, entry in zip(items, answer["transactions"], strict=True):
        position = entry["position"]
        record = records[(position["partition"], position["offset"])]
        assert record.key == item["transaction_id"].encode()
        assert dict(record.headers) == HEADERS
        assert json.loads(record.value)["amount"] == item["amount"]
        assert entry["transaction_id"] == item["transaction_id"]
        highest[position["partition"]] = max(
            highest.get(position["partition"], -1), position["offset"]
        )
    assert decode_token(answer["consistency_token"]) == highest
    assert len(highest) > 1  # spread over partitions by key


async def test_the_same_transaction_id_goes_to_the_same_partition(
    kafka_settings: TopicFactory,
) -> None:
    settings = await kafka_settings()
    async with running_app(settings) as (_, client):
        answers = [
            await client.post(
                "/transactions",
                content=SAME_ID,
                headers=bearer(),
            )
            for _ in range(3)
        ]
    positions = [answer.json()["position"] for answer in answers]
    assert len({p["partition"] for p in positions}) == 1
    assert [p["offset"] for p in positions] == [0, 1, 2]


async def test_ready_when_the_broker_and_topic_answer(kafka_settings: TopicFactory) -> None:
    settings = await kafka_settings()
    async with running_app(settings) as (_, client):
        response = await client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"kafka": "ok"}
