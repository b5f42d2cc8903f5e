"""The stream broadcaster over fakes: one read per change shared by every subscriber, bursts
coalesced, windows ticking, slow subscribers dropped, the client limit, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from query_api.stream.broadcaster import (
    ClientStreamsExceededError,
    StatsBroadcaster,
    StreamEvent,
    StreamFullError,
    Window,
    WindowNotStreamedError,
)
from shared.settings import DEFAULT_STREAM_WINDOWS


class FakeChanges:
    """A ChangeFeed the test moves by hand; `idle` is set while a pump waits on it."""

    def __init__(self) -> None:
        self.generation = 0
        self._event = asyncio.Event()
        self.idle = asyncio.Event()

    def bump(self) -> None:
        self.generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def changed(self) -> None:
        self.idle.set()
        try:
            await self._event.wait()
        finally:
            self.idle.clear()


class FakeReader:
    """Counts reads; each read returns the count so far as the event; `gate` can hold it."""

    def __init__(self, changes: FakeChanges) -> None:
        self.changes = changes
        self.calls: list[Window] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, window: Window) -> StreamEvent:
        self.changes.idle.clear()
        await self.gate.wait()
        self.calls.append(window)
        return StreamEvent(
            id=str(len(self.calls)), data=f"g{self.changes.generation}", window=window
        )


class FakeMetrics:
    def __init__(self) -> None:
        self.clients = 0
        self.dropped = 0

    def stream_clients(self, count: int) -> None:
        self.clients = count

    def stream_read(self, window: Window) -> None:
        pass

    def stream_dropped(self) -> None:
        self.dropped += 1


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def build(
    *,
    max_hz: float = 1000,
    max_clients: int = 1000,
    max_per_client: int = 1000,
    queue_size: int = 8,
    tick: float = 60,
) -> tuple[StatsBroadcaster, FakeChanges, FakeReader, FakeMetrics]:
    changes = FakeChanges()
    reader = FakeReader(changes)
    metrics = FakeMetrics()
    broadcaster = StatsBroadcaster(
        read=reader,
        changes=changes,
        metrics=metrics,
        max_hz=max_hz,
        max_clients=max_clients,
        max_per_client=max_per_client,
        windows=DEFAULT_STREAM_WINDOWS,
        queue_size=queue_size,
        tick_seconds=tick,
    )
    return broadcaster, changes, reader, metrics


async def test_one_read_per_change_is_shared_by_every_subscriber() -> None:
    broadcaster, changes, reader, metrics = build()
    subs = [broadcaster.subscribe([None], client="c") for _ in range(200)]
    await until(changes.idle.is_set)
    assert len(reader.calls) == 1
    changes.bump()
    await until(lambda: len(reader.calls) == 2 and changes.idle.is_set())
    for sub in subs:
        assert (await sub.next()) is not None
        second = await sub.next()
        assert second is not None
        assert second.data == "g1"
    assert len(reader.calls) == 2  # 200 subscribers, two changes' worth of reads
    assert metrics.clients == 200
    await broadcaster.close()


async def test_a_burst_of_changes_during_a_read_costs_one_more_read() -> None:
    broadcaster, changes, reader, _ = build()
    sub = broadcaster.subscribe([None], client="c")
    await until(changes.idle.is_set)
    reader.gate.clear()
    changes.bump()
    await asyncio.sleep(0)
    for _ in range(50):
        changes.bump()
    reader.gate.set()
    await until(changes.idle.is_set)
    assert len(reader.calls) == 3  # the first, the one the burst began, one for the rest
    events = [await sub.next() for _ in range(3)]
    assert [e.data for e in events if e is not None][-1] == "g51"
    await broadcaster.close()


async def test_reads_are_at_most_max_hz_apart() -> None:
    broadcaster, changes, reader, _ = build(max_hz=2)  # reads start >= 0.5 s apart
    loop = asyncio.get_running_loop()
    read_at: list[float] = []
    broadcaster.subscribe([None], client="c")
    await until(lambda: len(reader.calls) == 1)
    read_at.append(loop.time())
    changes.bump()  # right after the first read: the next one waits for the interval
    await until(lambda: len(reader.calls) == 2)
    read_at.append(loop.time())
    assert read_at[1] - read_at[0] >= 0.45
    await broadcaster.close()


async def test_a_window_ticks_without_changes() -> None:
    broadcaster, _, reader, _ = build(tick=0.05)
    sub = broadcaster.subscribe([60], client="c")
    await until(lambda: len(reader.calls) >= 3)
    assert set(reader.calls) == {60}
    assert (await sub.next()) is not None
    await broadcaster.close()


async def test_a_late_subscriber_gets_the_current_snapshot_at_once() -> None:
    broadcaster, changes, reader, _ = build()
    broadcaster.subscribe([None], client="c")
    await until(changes.idle.is_set)
    late = broadcaster.subscribe([None], client="c")
    assert late.pending == 1
    event = await late.next()
    assert event is not None
    assert event.id == "1"
    assert len(reader.calls) == 1
    await broadcaster.close()


async def test_a_subscriber_that_stops_reading_is_dropped_and_bounded() -> None:
    broadcaster, changes, reader, metrics = build(queue_size=3)
    slow = broadcaster.subscribe([None], client="c")
    fast = broadcaster.subscribe([None], client="c")
    for _ in range(10):
        await until(changes.idle.is_set)
        assert slow.pending <= 3
        assert (await fast.next()) is not None
        changes.bump()
    await until(lambda: slow.dropped)
    assert metrics.dropped == 1
    assert broadcaster.clients == 1
    assert slow.pending <= 3
    assert (await slow.next()) is None
    assert len(reader.calls) >= 4
    await broadcaster.close()


async def test_the_client_limit_refuses_one_more() -> None:
    broadcaster, *_ = build(max_clients=2)
    first = broadcaster.subscribe([None], client="c")
    broadcaster.subscribe([10], client="c")
    with pytest.raises(StreamFullError):
        broadcaster.subscribe([None], client="c")
    broadcaster.unsubscribe(first)
    broadcaster.subscribe([None], client="c")
    await broadcaster.close()


async def test_one_client_address_holds_at_most_its_share() -> None:
    broadcaster, *_ = build(max_clients=10, max_per_client=2)
    first = broadcaster.subscribe([None], client="203.0.113.7")
    broadcaster.subscribe([60], client="203.0.113.7")
    with pytest.raises(ClientStreamsExceededError):
        broadcaster.subscribe([None], client="203.0.113.7")
    broadcaster.subscribe([None], client="198.51.100.1")  # another client is not refused
    broadcaster.unsubscribe(first)
    broadcaster.subscribe([None], client="203.0.113.7")  # a stream that ends frees its place
    assert broadcaster.clients == 3
    await broadcaster.close()


async def test_only_the_streamed_windows_get_a_reader() -> None:
    broadcaster, changes, reader, _ = build()
    with pytest.raises(WindowNotStreamedError, match="7, 3599 are not streamed"):
        broadcaster.subscribe([60, 7, 3599], client="c")
    assert broadcaster.clients == 0
    every = [None, *DEFAULT_STREAM_WINDOWS]
    subs = [broadcaster.subscribe(every[i : i + 8], client=f"c{i}") for i in range(len(every))]
    await until(lambda: changes.idle.is_set() and len(reader.calls) == len(every))
    assert set(reader.calls) == set(every)  # one reader per window, however many ask
    assert broadcaster.clients == len(subs)
    await broadcaster.close()


async def test_the_last_unsubscribe_stops_reading() -> None:
    broadcaster, changes, reader, _ = build()
    sub = broadcaster.subscribe([None, 5], client="c")
    await until(lambda: len(reader.calls) == 2)
    broadcaster.unsubscribe(sub)
    changes.bump()
    await asyncio.sleep(0.05)
    assert len(reader.calls) == 2
    assert broadcaster.clients == 0
    await broadcaster.close()


async def test_close_ends_every_subscription() -> None:
    broadcaster, changes, _, _ = build()
    subs = [broadcaster.subscribe([None], client="c") for _ in range(3)]
    await until(changes.idle.is_set)
    await broadcaster.close()
    for sub in subs:
        event = await sub.next()
        while event is not None:
            event = await sub.next()
    with pytest.raises(StreamFullError):
        broadcaster.subscribe([None], client="c")
