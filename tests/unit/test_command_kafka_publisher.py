"""`KafkaEventPublisher` around a scripted stand-in for `AIOKafkaProducer` (no I/O): the
producer configuration, the publish timeout, broker errors, background reconnection, and the
same producer working again once acks flow (what a broker coming back looks like to us).

The real broker is exercised in tests/integration/test_command_outage.py; stopping it is not
possible there (it is shared), so the "broker dies after we connected" case lives here."""

from __future__ import annotations

import asyncio
import time

import pytest

from command_api.adapters.kafka_publisher import KafkaEventPublisher
from command_api.ports import EventLogNotReadyError, Position, PublishFailedError
from shared.events import deserialize, event_headers
from shared.settings import CommandSettings, KafkaSettings
from tests.unit.fake_producer import FakeProducer, event

TIMEOUT = 0.3


@pytest.fixture(autouse=True)
def fresh_fakes() -> None:
    FakeProducer.made = []
    FakeProducer.failing_starts = 0


def publisher() -> KafkaEventPublisher:
    return KafkaEventPublisher(
        KafkaSettings(bootstrap_servers="broker:9092", topic="tx.test"),
        CommandSettings(publish_timeout_seconds=TIMEOUT, producer_linger_ms=3),
        create_topic=False,
        producer_factory=FakeProducer,
    )


async def test_the_producer_is_idempotent_with_acks_all_and_bounded() -> None:
    log = publisher()
    await log.start()
    [producer] = FakeProducer.made
    assert producer.config["acks"] == "all"
    assert producer.config["enable_idempotence"] is True
    assert producer.config["linger_ms"] == 3
    assert producer.config["request_timeout_ms"] == 1000
    assert producer.config["bootstrap_servers"] == "broker:9092"
    await log.stop()
    assert producer.stopped


async def test_failover_settings_reach_the_producer() -> None:
    log = KafkaEventPublisher(
        KafkaSettings(
            bootstrap_servers="broker:9092",
            topic="tx.test",
            request_timeout_ms=1500,
            metadata_max_age_ms=5000,
        ),
        CommandSettings(publish_timeout_seconds=TIMEOUT),
        create_topic=False,
        producer_factory=FakeProducer,
    )
    await log.start()
    [producer] = FakeProducer.made
    assert producer.config["request_timeout_ms"] == 1500
    assert producer.config["metadata_max_age_ms"] == 5000
    await log.stop()


async def test_events_are_sent_with_key_headers_and_value() -> None:
    log = publisher()
    await log.start()
    sent = [event("a"), event("bb"), event("ccc")]
    positions = await log.publish(sent)

    [producer] = FakeProducer.made
    assert positions == [Position(1, 0), Position(2, 1), Position(0, 2)]
    for original, (topic, key, value, headers) in zip(sent, producer.sent, strict=True):
        assert topic == "tx.test"
        assert key == original.transaction_id.encode()
        assert headers == event_headers()
        assert deserialize(value) == original
    await log.stop()


async def test_no_ack_in_time_is_a_timeout_failure_within_the_bound() -> None:
    log = publisher()
    await log.start()
    FakeProducer.made[0].mode = "hang"
    started = time.monotonic()
    with pytest.raises(PublishFailedError) as raised:
        await log.publish([event(), event("t-2")])
    assert raised.value.reason == "timeout"
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.5
    assert all(ack.cancelled() for ack in FakeProducer.made[0].pending)
    await log.stop()


@pytest.mark.parametrize("mode", ["fail", "refuse"])
async def test_broker_errors_are_rejections(mode: str) -> None:
    log = publisher()
    await log.start()
    FakeProducer.made[0].mode = mode
    with pytest.raises(PublishFailedError) as raised:
        await log.publish([event()])
    assert raised.value.reason == "rejected"
    await log.stop()


async def test_the_same_producer_works_again_when_acks_flow() -> None:
    log = publisher()
    await log.start()
    producer = FakeProducer.made[0]
    producer.mode = "hang"  # the broker went away
    with pytest.raises(PublishFailedError):
        await log.publish([event()])
    producer.client.reachable = False
    with pytest.raises(EventLogNotReadyError):
        await log.check_ready()

    producer.mode = "ack"  # the broker is back: aiokafka reconnects by itself
    producer.client.reachable = True
    assert len(await log.publish([event()])) == 1
    await log.check_ready()
    assert len(FakeProducer.made) == 1  # no new producer, no restart
    await log.stop()


async def test_unreachable_at_start_connects_in_the_background() -> None:
    FakeProducer.failing_starts = 2
    log = publisher()
    await log.start()  # does not raise, does not block

    assert not log.connected
    with pytest.raises(PublishFailedError) as raised:
        await log.publish([event()])
    assert raised.value.reason == "not_connected"
    with pytest.raises(EventLogNotReadyError):
        await log.check_ready()

    deadline = time.monotonic() + 5
    while not log.connected:
        assert time.monotonic() < deadline, "never connected"
        await asyncio.sleep(0.05)
    assert len(await log.publish([event()])) == 1
    assert [p.stopped for p in FakeProducer.made] == [True, True, False]  # failed ones closed
    await log.stop()


def connecting() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "kafka-connect" and not t.done()]


async def test_stop_while_still_connecting_cancels_the_retries() -> None:
    FakeProducer.failing_starts = 1000
    log = publisher()
    await log.start()
    async with asyncio.timeout(5):
        while len(FakeProducer.made) < 2:  # the background retries have begun
            await asyncio.sleep(0.05)
    assert connecting()
    await log.stop()
    assert connecting() == []  # no retry is left to make another producer
    assert not log.connected


async def test_an_unknown_topic_is_not_ready() -> None:
    log = publisher()
    await log.start()
    FakeProducer.made[0].client.cluster.topics.clear()
    with pytest.raises(EventLogNotReadyError, match="unknown"):
        await log.check_ready()
    await log.stop()
