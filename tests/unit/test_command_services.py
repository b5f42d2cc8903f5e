"""The transaction recorder with the in-memory log: events built, ids, positions, tokens, failures;
and the in-memory publisher and the metrics decorator it is tested with."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from command_api.instrumented_publisher import InstrumentedPublisher
from command_api.metrics import CommandMetrics
from command_api.ports import Position, PublishFailedError
from command_api.services import (
    MAX_BATCH_ITEMS,
    RandomUuids,
    RecordTransaction,
    TransactionBatch,
    TransactionRecorder,
    consistency_token,
)
from shared.consistency import decode_token, is_covered
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.unit.command_kit import NOW, fixed_clock

OCCURRED = datetime(2026, 11, 26, 13, 0, tzinfo=timezone(timedelta(hours=2)))


def ids() -> itertools.count[int]:
    return itertools.count(1)


def new_recorder(log: InMemoryEventPublisher) -> TransactionRecorder:
    counter = ids()
    return TransactionRecorder(
        publisher=log,
        clock=fixed_clock,
        new_ids=lambda n: [uuid.UUID(int=next(counter)) for _ in range(n)],
    )


def command(amount: str = "9.99", transaction_id: str | None = None) -> RecordTransaction:
    return RecordTransaction(
        amount=Decimal(amount), occurred_at=OCCURRED, transaction_id=transaction_id
    )


async def test_record_builds_the_event() -> None:
    log = InMemoryEventPublisher()
    receipt = await new_recorder(log).record(command(transaction_id="t-9"), producer="shop")

    [(position, event)] = log.appended
    assert event.event_id == uuid.UUID(int=1)
    assert event.transaction_id == "t-9"
    assert event.amount == Decimal("9.99")
    assert event.occurred_at == OCCURRED
    assert event.recorded_at == NOW
    assert event.producer == "shop"
    assert (receipt.transaction_ids, receipt.event_ids, receipt.positions) == (
        ["t-9"],
        [event.event_id],
        [position],
    )
    assert decode_token(receipt.consistency_token) == {position.partition: position.offset}


async def test_a_missing_transaction_id_is_generated() -> None:
    log = InMemoryEventPublisher()
    receipt = await new_recorder(log).record(command(), producer="shop")
    assert receipt.transaction_ids == [str(uuid.UUID(int=2))]
    assert log.events[0].event_id == uuid.UUID(int=1)


async def test_a_batch_generates_the_missing_ids_after_the_event_ids() -> None:
    log = InMemoryEventPublisher()
    batch = TransactionBatch.of([command(), command(transaction_id="mine"), command()])
    receipt = await new_recorder(log).record_batch(batch, producer="shop")

    assert receipt.event_ids == [uuid.UUID(int=n) for n in (1, 2, 3)]
    assert receipt.transaction_ids == [str(uuid.UUID(int=4)), "mine", str(uuid.UUID(int=5))]
    assert [event.transaction_id for event in log.events] == receipt.transaction_ids


async def test_a_batch_keeps_order_and_tokens_name_the_highest_offsets() -> None:
    log = InMemoryEventPublisher(partitions=3)
    commands = [command(f"{i}.00", f"id-{i}") for i in range(1, 31)]
    receipt = await new_recorder(log).record_batch(TransactionBatch.of(commands), producer="shop")

    assert receipt.transaction_ids == [f"id-{i}" for i in range(1, 31)]
    assert receipt.positions == [p for p, _ in log.appended]
    assert receipt.event_ids == [uuid.UUID(int=n) for n in range(1, 31)]
    assert [event.amount for event in log.events] == [Decimal(i) for i in range(1, 31)]
    assert {(event.recorded_at, event.producer) for event in log.events} == {(NOW, "shop")}
    token = decode_token(receipt.consistency_token)
    assert token == {p: len(events) - 1 for p, events in log.log.items() if events}
    next_offsets = {p: len(events) for p, events in log.log.items()}
    assert is_covered(token, next_offsets)
    assert not is_covered(token, {**next_offsets, 0: next_offsets[0] - 1})


def test_consistency_token_takes_the_highest_offset_per_partition() -> None:
    positions = [Position(2, 7), Position(0, 3), Position(2, 9), Position(2, 8)]
    assert consistency_token(positions) == "v1.0-3.2-9"


async def test_a_failed_publish_propagates() -> None:
    log = InMemoryEventPublisher()
    log.failure = PublishFailedError("timeout", "no ack")
    with pytest.raises(PublishFailedError) as raised:
        await new_recorder(log).record(command(), producer="shop")
    assert raised.value.reason == "timeout"


@pytest.mark.parametrize("size", [0, MAX_BATCH_ITEMS + 1])
async def test_batch_size_is_bounded(size: int) -> None:
    log = InMemoryEventPublisher()
    with pytest.raises(ValueError, match="batch"):
        await new_recorder(log).record_batch(TransactionBatch.of([command()] * size), producer="s")
    assert log.events == []


@pytest.mark.parametrize(
    ("amount", "occurred_at"),
    [
        ("0", OCCURRED),
        ("-1", OCCURRED),
        ("0.001", OCCURRED),
        ("1000000000000.01", OCCURRED),
        ("NaN", OCCURRED),
        ("Infinity", OCCURRED),
        ("1", datetime(2026, 1, 1)),  # naive
    ],
)
def test_commands_keep_their_invariants(amount: str, occurred_at: datetime) -> None:
    with pytest.raises(ValueError, match=r"amount|timezone"):
        RecordTransaction(amount=Decimal(amount), occurred_at=occurred_at)


async def test_the_in_memory_log_partitions_by_key() -> None:
    log = InMemoryEventPublisher(partitions=4)
    recorder = new_recorder(log)
    for _ in range(3):
        await recorder.record(command(transaction_id="same"), producer="p")
    partitions = {position.partition for position, _ in log.appended}
    offsets = [position.offset for position, _ in log.appended]
    assert len(partitions) == 1
    assert offsets == [0, 1, 2]


async def test_the_metrics_decorator_counts() -> None:
    registry = CollectorRegistry()
    log = InMemoryEventPublisher()
    publisher = InstrumentedPublisher(log, CommandMetrics(registry))
    recorder = TransactionRecorder(publisher=publisher, clock=lambda: datetime.now(UTC))

    await recorder.record_batch(TransactionBatch.of([command(), command()]), producer="p")
    log.failure = PublishFailedError("rejected", "no")
    with pytest.raises(PublishFailedError):
        await recorder.record(command(), producer="p")

    assert registry.get_sample_value("transactions_accepted_total") == 2
    assert registry.get_sample_value("event_publish_duration_seconds_count") == 1
    assert registry.get_sample_value("event_publish_failures_total", {"reason": "rejected"}) == 1


def test_random_uuids_are_distinct_version_4_rfc_4122_uuids() -> None:
    new_ids = RandomUuids()
    ids = [*new_ids(1), *new_ids(1000), *(i for _ in range(300) for i in new_ids(2))]  # 3 blocks
    assert len(set(ids)) == len(ids) == 1601
    assert {(u.version, u.variant) for u in ids} == {(4, uuid.RFC_4122)}


def test_asking_random_uuids_for_none_takes_none_from_the_pool() -> None:
    new_ids = RandomUuids()
    new_ids(1)  # fills the pool
    assert new_ids(0) == []
    assert len({*new_ids(RandomUuids.BLOCK - 1)}) == RandomUuids.BLOCK - 1  # the pool is intact
