"""`KafkaEventPublisher` around a scripted stand-in for `AIOKafkaProducer` (no I/O): the
producer configuration, concurrent publishes sharing record batches (each event at its key's
partition, at the position its batch's ack implies), the publish timeout, broker errors,
background reconnection, and the same producer working again once acks flow (what a broker
coming back looks like to us).

The real broker is exercised in tests/integration/test_command_outage.py; stopping it is not
possible there (it is shared), so the "broker dies after we connected" case lives here."""

from __future__ import annotations

import asyncio
import time

import pytest

from command_api.adapters.kafka_publisher import KafkaEventPublisher
from command_api.ports import EventLogNotReadyError, Position, PublishFailedError
from shared.events import TransactionRecorded, deserialize, event_headers
from shared.partitioner import partition_of
from shared.settings import CommandSettings, KafkaSettings
from tests.unit.fake_producer import FakeProducer, event

TIMEOUT = 0.3  # the publish bound, for the tests of what happens when it passes
# For the tests of what a publish sends: building hundreds of events is CPU work, which on a
# loaded machine once outlasted 0.3 s and failed the publish that was under test.
UNHURRIED = 30.0


@pytest.fixture(autouse=True)
def fresh_fakes() -> None:
    FakeProducer.made = []
    FakeProducer.failing_starts = 0


def publisher(*, timeout: float = TIMEOUT, linger_ms: int = 0) -> KafkaEventPublisher:
    return KafkaEventPublisher(
        KafkaSettings(bootstrap_servers="broker:9092", topic="tx.test"),
        CommandSettings(publish_timeout_seconds=timeout, producer_linger_ms=linger_ms),
        create_topic=False,
        producer_factory=FakeProducer,
    )


async def test_the_producer_is_idempotent_with_acks_all_and_bounded() -> None:
    log = publisher()
    await log.start()
    [producer] = FakeProducer.made
    assert producer.config["acks"] == "all"
    assert producer.config["enable_idempotence"] is True
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


def check(
    producer: FakeProducer, events: list[TransactionRecorded], positions: list[Position]
) -> None:
    """Each position names the record holding its event, in the partition of its key."""
    assert len(positions) == len(events)
    for original, position in zip(events, positions, strict=True):
        assert position.partition == partition_of(original.key, 3)
        key, value, headers = producer.log[position.partition][position.offset]
        assert key == original.transaction_id.encode()
        assert headers == event_headers()
        assert deserialize(value) == original


async def published(events: list[TransactionRecorded], *, capacity: int = 1000) -> FakeProducer:
    """Publish through a fake producer whose record batches hold `capacity` records."""
    log = publisher(timeout=UNHURRIED)
    await log.start()
    [producer] = FakeProducer.made
    producer.batch_capacity = capacity
    check(producer, events, await log.publish(events))
    await log.stop()
    return producer


def in_partition(partition: int, count: int, prefix: str = "order") -> list[TransactionRecorded]:
    ids = (f"{prefix}-{i}" for i in range(100 * count))
    return [event(tx) for tx in ids if partition_of(tx.encode(), 3) == partition][:count]


async def test_each_event_is_sent_to_its_keys_partition_one_record_batch_per_partition() -> None:
    producer = await published([event(f"order-{index}") for index in range(600)])
    assert sorted(producer.calls) == [("send_batch", p, len(producer.log[p])) for p in (0, 1, 2)]


async def test_a_full_record_batch_is_sent_and_the_next_one_started() -> None:
    producer = await published(in_partition(1, 100), capacity=30)
    assert producer.calls == [("send_batch", 1, n) for n in (30, 30, 30, 10)]


async def test_concurrent_publishes_share_each_partitions_record_batch() -> None:
    log = publisher(timeout=UNHURRIED)
    await log.start()
    [producer] = FakeProducer.made
    events = [event(f"single-{n}") for n in range(60)]
    positions = await asyncio.gather(*(log.publish([e]) for e in events))
    check(producer, events, [position for [position] in positions])
    assert sorted(producer.calls) == [("send_batch", p, len(producer.log[p])) for p in (0, 1, 2)]
    await log.stop()


async def test_the_next_batch_fills_while_a_partitions_batch_awaits_its_ack() -> None:
    log = publisher(timeout=UNHURRIED)
    await log.start()
    [producer] = FakeProducer.made
    producer.mode = "hold"
    first, *later = in_partition(2, 8)
    waiting = asyncio.create_task(log.publish([first]))
    async with asyncio.timeout(5):
        while not producer.held:
            await asyncio.sleep(0)
    following = [asyncio.create_task(log.publish([e])) for e in later]
    for _ in range(20):
        await asyncio.sleep(0)
    assert producer.calls == [("send_batch", 2, 1)]  # the others wait for the first's ack
    producer.mode = "ack"
    producer.release()
    positions = [await waiting, *await asyncio.gather(*following)]
    assert producer.calls == [("send_batch", 2, 1), ("send_batch", 2, 7)]
    check(producer, [first, *later], [position for [position] in positions])
    await log.stop()


async def test_a_partition_never_has_two_batches_waiting_in_the_producer() -> None:
    log = publisher(timeout=UNHURRIED)
    await log.start()
    [producer] = FakeProducer.made
    producer.batch_capacity = 10
    producer.drained = asyncio.Event()
    publishes = [asyncio.create_task(log.publish(in_partition(0, 25, f"{n}"))) for n in range(5)]
    async with asyncio.timeout(5):
        while not producer.waiting:
            await asyncio.sleep(0)
    for _ in range(100):  # every publish runs up to where it waits
        await asyncio.sleep(0)
    producer.drained.set()
    positions = await asyncio.gather(*publishes)
    assert [len(p) for p in positions] == [25] * 5
    assert producer.most_waiting == 1  # aiokafka never sees two waiters on one partition
    await log.stop()


async def test_a_publish_cancelled_while_waiting_leaves_the_others_in_its_batch() -> None:
    log = publisher(timeout=UNHURRIED)
    await log.start()
    [producer] = FakeProducer.made
    producer.mode = "hold"
    gone, kept = in_partition(1, 2)
    tasks = [asyncio.create_task(log.publish([e])) for e in (gone, kept)]
    async with asyncio.timeout(5):
        while not producer.held:
            await asyncio.sleep(0)
    tasks[0].cancel()
    producer.release()
    [position] = await tasks[1]
    check(producer, [kept], [position])
    await log.stop()


async def test_with_a_linger_publishes_of_several_loop_turns_share_a_batch() -> None:
    log = publisher(timeout=UNHURRIED, linger_ms=500)
    await log.start()
    [producer] = FakeProducer.made
    events = in_partition(0, 3)
    tasks = []
    for e in events:
        tasks.append(asyncio.create_task(log.publish([e])))
        for _ in range(3):
            await asyncio.sleep(0)  # without a linger, each would be its own batch
    positions = [position for [position] in await asyncio.gather(*tasks)]
    assert producer.calls == [("send_batch", 0, 3)]
    check(producer, events, positions)
    await log.stop()


async def test_stopping_answers_the_publishes_whose_batch_was_not_handed_over() -> None:
    log = publisher(timeout=UNHURRIED, linger_ms=1000)
    await log.start()
    waiting = asyncio.create_task(log.publish([event()]))
    for _ in range(3):
        await asyncio.sleep(0)
    await log.stop()
    with pytest.raises(PublishFailedError) as raised:
        await waiting
    assert raised.value.reason == "rejected"
    assert FakeProducer.made[0].calls == []


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
