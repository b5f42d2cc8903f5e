"""`StatsBroadcaster`: one reader per process shares each stats snapshot with every stream.

Each distinct window (`None` for all-time) is a *topic*. A topic has one pump task, alive while
anyone subscribes: it reads the snapshot once, hands the same encoded event to every
subscriber, then waits for the next reason to read: the `ChangeFeed` (the `PositionBoard`,
woken by the projector's NOTIFY) moved, or, for a window, one second passed (a window slides
even when nothing arrives). Reads are at least `1 / max_hz` apart, so a burst of commits costs
one read per interval per topic, whatever the number of clients: O(1) database reads per change
per window.

Bounded, so that no client can take the service: only the windows of a fixed set are streamed
(`WindowNotStreamedError` for another: at most one reader per window of the set, plus
all-time, whatever the clients ask); at most `max_clients` subscriptions (`StreamFullError`
beyond), and at most `max_per_client` from one client address (`ClientStreamsExceededError`);
each with a queue of `queue_size` events; a subscriber whose queue is full (it stopped
reading) is dropped rather than buffered. `close()` ends every subscription (shutdown). No
FastAPI or driver here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from query_api.errors import QueryError
from query_api.ports import StreamMetrics
from shared.consistency import encode_token

logger = logging.getLogger(__name__)

Window = int | None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One snapshot as sent: `id` is the resume position, `data` the `/stats` JSON."""

    id: str
    data: str
    window: Window

    @classmethod
    def of(cls, window: Window, data: str, offsets: Mapping[int, int]) -> StreamEvent:
        """The event of one snapshot; its id is the snapshot's offsets in consistency-token
        form (`v1.<partition>-<next offset>...`), `v1.` when nothing was folded yet."""
        return cls(id=encode_token(offsets) if offsets else "v1.", data=data, window=window)


Read = Callable[[Window], Awaitable[StreamEvent]]


class ChangeFeed(Protocol):
    """What tells the broadcaster the projection moved (the process's `PositionBoard`)."""

    @property
    def generation(self) -> int: ...

    async def changed(self) -> None:
        """Return at the next change."""
        ...


class StreamFullError(Exception):
    """The process already serves `max_clients` streams (503)."""


class ClientStreamsExceededError(Exception):
    """This client address already holds `max_per_client` streams (429)."""


class WindowNotStreamedError(Exception):
    """A window outside the streamed set (422): `GET /stats?window=` reads any window."""


class Subscription:
    """One client's view: the events of its windows, oldest first, bounded."""

    def __init__(self, windows: tuple[Window, ...], queue_size: int, client: str) -> None:
        self.windows = windows
        self.client = client
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize=queue_size)
        self.dropped = False
        self.closed = False

    def offer(self, event: StreamEvent) -> bool:
        """Queue `event`; False (and dropped) when the client is too far behind."""
        if self.closed:
            return True
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            self._end()
            return False
        return True

    async def next(self) -> StreamEvent | None:
        """The next event, or None once the subscription ended (dropped or shut down)."""
        if self.dropped:
            return None
        return await self._queue.get()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _end(self) -> None:
        self.closed = True
        while True:  # make room for the end marker: nothing queued is sent after it anyway
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()


@dataclass(slots=True)
class _Topic:
    window: Window
    subscribers: set[Subscription] = field(default_factory=set)
    latest: StreamEvent | None = None
    task: asyncio.Task[None] | None = None


class StatsBroadcaster:
    def __init__(
        self,
        *,
        read: Read,
        changes: ChangeFeed,
        metrics: StreamMetrics,
        max_hz: float,
        max_clients: int,
        max_per_client: int,
        windows: Collection[int],
        queue_size: int,
        tick_seconds: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self._read = read
        self._changes = changes
        self._metrics = metrics
        self._interval = 1.0 / max_hz
        self._max_clients = max_clients
        self._max_per_client = max_per_client
        self._windows = frozenset(windows)
        self._per_client: Counter[str] = Counter()
        self._queue_size = queue_size
        self._tick = tick_seconds
        self._retry = retry_seconds
        self._topics: dict[Window, _Topic] = {}
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self.reads = 0  # snapshot reads so far (tests and metrics)

    @property
    def clients(self) -> int:
        return len(self._subscriptions)

    @property
    def readers(self) -> int:
        """Snapshot readers running: one per window somebody streams (all-time included)."""
        return len(self._topics)

    @property
    def windows(self) -> list[int]:
        """The windows streamed, in seconds, in order."""
        return sorted(self._windows)

    def subscribe(self, windows: Iterable[Window], *, client: str) -> Subscription:
        """A new subscription of `client` (its address); it gets each window's current
        snapshot at once when known."""
        unique = tuple(dict.fromkeys(windows)) or (None,)
        others = [w for w in unique if w is not None and w not in self._windows]
        if others:
            msg = (
                f"Window(s) {', '.join(map(str, others))} are not streamed; the streamed"
                f" windows are {', '.join(map(str, self.windows))} seconds (any other one:"
                " GET /stats?window=)."
            )
            raise WindowNotStreamedError(msg)
        if self._closed or len(self._subscriptions) >= self._max_clients:
            msg = f"This process already serves {self._max_clients} streams."
            raise StreamFullError(msg)
        if self._per_client[client] >= self._max_per_client:
            msg = f"This client already holds {self._max_per_client} streams."
            raise ClientStreamsExceededError(msg)
        subscription = Subscription(unique, self._queue_size, client)
        self._subscriptions.add(subscription)
        self._per_client[client] += 1
        for window in unique:
            topic = self._topics.get(window)
            if topic is None:
                topic = self._topics[window] = _Topic(window)
                topic.task = asyncio.create_task(self._pump(topic), name=f"stream-{window}")
            topic.subscribers.add(subscription)
            if topic.latest is not None:
                subscription.offer(topic.latest)
        self._metrics.stream_clients(len(self._subscriptions))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription not in self._subscriptions:
            return
        self._subscriptions.discard(subscription)
        self._per_client[subscription.client] -= 1
        if not self._per_client[subscription.client]:
            del self._per_client[subscription.client]
        for window in subscription.windows:
            topic = self._topics.get(window)
            if topic is None:
                continue
            topic.subscribers.discard(subscription)
            if not topic.subscribers:  # nobody listens: stop reading for it
                del self._topics[window]
                if topic.task is not None:
                    topic.task.cancel()
        self._metrics.stream_clients(len(self._subscriptions))

    async def close(self) -> None:
        """End every subscription and stop every reader (the process is shutting down)."""
        self._closed = True
        tasks = [t.task for t in self._topics.values() if t.task is not None]
        for subscription in list(self._subscriptions):
            subscription._end()
            self.unsubscribe(subscription)  # the last one out cancels its topic's reader
        self._topics.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self, topic: _Topic) -> None:
        loop = asyncio.get_running_loop()
        while True:
            seen = self._changes.generation
            started = loop.time()
            try:
                event = await self._read(topic.window)
            except QueryError as err:  # the store is down: keep the streams, retry shortly
                logger.warning("stream read failed (window=%s): %s", topic.window, err)
                await asyncio.sleep(self._retry)
                continue
            except Exception:  # the one reader of this topic must outlive any surprise
                logger.exception("stream read failed (window=%s)", topic.window)
                await asyncio.sleep(self._retry)
                continue
            self.reads += 1
            self._metrics.stream_read(topic.window)
            topic.latest = event
            for subscription in list(topic.subscribers):
                if not subscription.offer(event):
                    logger.info("dropped a stream client that stopped reading")
                    self._metrics.stream_dropped()
                    self.unsubscribe(subscription)
            await asyncio.sleep(max(0.0, started + self._interval - loop.time()))
            if self._changes.generation != seen:
                continue  # it moved while we read: read again (the interval has passed)
            with contextlib.suppress(TimeoutError):
                tick = None if topic.window is None else self._tick
                async with asyncio.timeout(tick):
                    await self._changes.changed()
