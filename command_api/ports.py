"""The command side's port to the event log, and what it promises.

Adapter: `adapters/kafka_publisher.py`; its in-memory double (`tests/doubles/memory_publisher.py`)
stands in for it in unit tests, and tests/integration/test_command_publisher_contract.py runs
against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol

from shared.events import TransactionRecorded

PublishFailure = Literal["not_connected", "timeout", "rejected"]


class Position(NamedTuple):
    """Where an event sits in the log (a NamedTuple: a batch makes one per event)."""

    partition: int
    offset: int


class PublishFailedError(Exception):
    """The log did not confirm the events in time. Some of them may still have been appended,
    so a retry must reuse the same transaction ids (the projector counts each id once)."""

    def __init__(self, reason: PublishFailure, detail: str) -> None:
        super().__init__(detail)
        self.reason: PublishFailure = reason


class EventLogNotReadyError(Exception):
    """Readiness: the event log cannot be reached right now."""


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[TransactionRecorded]) -> list[Position]:
        """Append `events` and return their positions, in order, once every one of them is
        acknowledged durably. Raise `PublishFailedError` within a bounded time otherwise."""
        ...

    async def publish_serialized(
        self, keys: Sequence[bytes], values: Sequence[bytes]
    ) -> list[Position]:
        """`publish` of events already serialized (`shared.events`), each value with its
        key (the transaction id): the same promise, without an event object each."""
        ...

    async def check_ready(self) -> None:
        """Return when the log answers; raise `EventLogNotReadyError` otherwise."""
        ...
