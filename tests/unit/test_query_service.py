"""The stats service against the in-memory reader: exact money, windows, token waits."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal

import pytest

from query_api.consistency import ConsistentReads
from query_api.errors import ConsistencyTimeoutError, InvalidQueryError
from query_api.ports import ProjectionPosition, StatsKind, WaitOutcome
from query_api.position_board import PositionBoard
from query_api.stats.models import StatsResponse
from query_api.stats.service import StatsService
from shared.money import average
from shared.totals import Totals
from tests.doubles.memory_reader import InMemoryProjectionReader, PartitionRow

NOW = 1_700_000_040.25  # :00.25 of a minute
SECOND = int(NOW)


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingMetrics:
    def __init__(self) -> None:
        self.kinds: list[StatsKind] = []
        self.waits: list[WaitOutcome] = []

    def stats_request(self, kind: StatsKind) -> None:
        self.kinds.append(kind)

    def consistency_wait(self, outcome: WaitOutcome, seconds: float) -> None:
        self.waits.append(outcome)


class CountingBoard(PositionBoard):
    """A `PositionBoard` that counts how often anyone asked whether it covers a token: a
    waiter woken by a change re-checks, so a test can wait for that instead of for ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def covers(self, token: Mapping[int, int]) -> bool:
        self.checks += 1
        return super().covers(token)


class Harness:
    def __init__(self, *, default_wait_ms: int = 2000, allowance: int = 5) -> None:
        self.reader = InMemoryProjectionReader()
        self.board = CountingBoard()
        self.clock = FakeClock()
        self.metrics = RecordingMetrics()
        self.service = StatsService(
            reader=self.reader,
            consistent=ConsistentReads(
                board=self.board, metrics=self.metrics, default_wait_ms=default_wait_ms
            ),
            clock=self.clock,
            metrics=self.metrics,
            window_allowance=allowance,
        )

    def record(self, amount: str, *, second: int = SECOND, partition: int = 0) -> None:
        self.reader.record(partition=partition, amount=Decimal(amount), event_second=second)


async def response(h: Harness, **kwargs: object) -> StatsResponse:
    view = await h.service.stats(**kwargs)  # type: ignore[arg-type]
    return StatsResponse.from_view(view)


async def until(predicate: object, *, timeout: float = 2.0) -> None:
    """Yield to the loop until `predicate()` holds (a deadline, never a fixed sleep)."""
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def test_empty_projection_is_zero_and_nulls() -> None:
    body = await response(Harness())
    assert (body.count, body.sum, body.avg, body.max, body.min) == (0, "0.00", None, None, None)
    assert body.as_of.version == 1
    assert body.as_of.offsets == {}
    assert body.as_of.total_lag == 0


async def test_all_time_merges_partitions_exactly() -> None:
    h = Harness()
    for partition, amount in [(0, "0.10"), (1, "0.20"), (2, "1000000000000.00"), (1, "0.01")]:
        h.record(amount, partition=partition)
    body = await response(h)
    assert body.count == 4
    assert body.sum == "1000000000000.31"  # exact: no float anywhere
    assert body.max == "1000000000000.00"
    assert body.min == "0.01"
    assert body.avg == "250000000000.08"  # 250000000000.0775 -> .08
    assert body.as_of.offsets == {0: 1, 1: 2, 2: 1}
    assert h.metrics.kinds == ["all_time"]


async def test_as_of_reports_lag_and_the_clock() -> None:
    h = Harness()
    h.record("1.00", partition=0)
    h.reader.set_log_end(0, 5)
    h.reader.put_partition(3, PartitionRow(next_offset=7, log_end_offset=6))  # never negative
    body = await response(h)
    assert body.as_of.lag == {0: 4, 3: 0}
    assert body.as_of.total_lag == 4
    assert body.as_of.server_time.timestamp() == NOW


@pytest.mark.parametrize(
    ("amounts", "avg"),
    [
        (["0.12", "0.13"], "0.12"),  # 0.125 -> 0.12 (half to even)
        (["0.13", "0.14"], "0.14"),  # 0.135 -> 0.14
        (["1.00", "1.01"], "1.00"),  # 1.005 -> 1.00
        (["1.01", "1.02"], "1.02"),  # 1.015 -> 1.02
        (["2.00", "0.01"], "1.00"),  # 1.005 -> 1.00
        (["0.01", "0.01", "0.02"], "0.01"),  # 0.01333...
        (["0.02", "0.02", "0.01"], "0.02"),  # 0.01666...
        (["0.99", "1.02"], "1.00"),  # 1.005 again, another way
        (["3.00", "0.02", "0.01"], "1.01"),  # 1.01 exactly
    ],
)
async def test_avg_is_rounded_half_even(amounts: list[str], avg: str) -> None:
    h = Harness()
    for amount in amounts:
        h.record(amount)
    assert (await response(h)).avg == avg


def test_average_never_double_rounds() -> None:
    # A sum of 26 digits over 4e15 transactions: the exact mean is 10000000000.01499999...,
    # which 28-digit Decimal division first rounds to ...015 and then half-even to .02.
    count = 4 * 10**15
    cents = count * (10**12 + 1) + count // 2 - 1
    total = Decimal(cents).scaleb(-2)
    assert average(total, count) == Decimal("10000000000.01")
    assert average(Decimal("0.25"), 2) == Decimal("0.12")
    assert average(Decimal(0), 0) is None


async def test_huge_sums_format_exactly() -> None:
    h = Harness()
    big = Totals(count=2, sum=Decimal("123456789012345678901234567890.10"))
    h.reader.put_partition(0, PartitionRow(next_offset=2, totals=big))
    assert (await response(h)).sum == "123456789012345678901234567890.10"


# -- windows --------------------------------------------------------------------------------


@pytest.mark.parametrize("now_offset", [0.0, 0.999, 29.5, 59.0, 59.999])
@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600])
async def test_window_counts_exactly_the_seconds_it_covers(now_offset: float, seconds: int) -> None:
    h = Harness(allowance=5)
    minute_start = SECOND  # NOW is :00.25 of its minute
    h.clock.now = minute_start + now_offset
    current = int(h.clock.now)
    start = current - seconds + 1
    h.record("1.00", second=start - 1)  # just before the window: out
    h.record("2.00", second=start)  # first second of the window: in
    h.record("4.00", second=current)  # the current second: in
    h.record("8.00", second=current + 5)  # future, within the allowance: in
    h.record("16.00", second=start - 3600)  # long ago: out
    body = await response(h, window_seconds=seconds)
    assert (body.count, body.sum) == (3, "14.00")  # start, current and future events only
    assert body.min == "2.00"
    assert body.as_of.window is not None
    assert body.as_of.window.seconds == seconds
    assert body.as_of.window.start.timestamp() == start
    assert h.metrics.kinds == ["window"]


async def test_window_reads_second_buckets_at_its_start_and_minutes_after() -> None:
    h = Harness(allowance=0)
    h.clock.now = SECOND + 30.5  # :30 -> window 61 s starts at :30 of the previous minute
    h.reader.put_second(SECOND - 30, Totals(1, Decimal("1.00"), Decimal("1.00"), Decimal("1.00")))
    h.reader.put_second(SECOND - 31, Totals(1, Decimal("9.00"), Decimal("9.00"), Decimal("9.00")))
    # the previous minute's bucket holds :29 too: it must not be read for this window
    h.reader.put_minute(SECOND // 60 - 1, Totals(5, Decimal("50.00"), Decimal("9"), Decimal("1")))
    h.reader.put_minute(SECOND // 60, Totals(2, Decimal("3.00"), Decimal("2.00"), Decimal("1")))
    body = await response(h, window_seconds=61)
    assert (body.count, body.sum) == (3, "4.00")


async def test_empty_window() -> None:
    h = Harness()
    h.record("1.00", second=SECOND - 7200)
    body = await response(h, window_seconds=60)
    assert (body.count, body.sum, body.avg, body.max, body.min) == (0, "0.00", None, None, None)
    assert body.as_of.offsets == {0: 1}


@pytest.mark.parametrize("seconds", [0, -5, 3601])
async def test_service_refuses_windows_out_of_range(seconds: int) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        await Harness().service.stats(window_seconds=seconds)
    assert caught.value.field == "window"


# -- consistency tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "v1", "v1.", "v2.0-1", "v1.0-x", "v1.-1-0", "garbage"])
async def test_malformed_token_is_a_field_error(token: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        await Harness().service.stats(consistency_token=token)
    assert caught.value.field == "consistency_token"


@pytest.mark.parametrize("wait_ms", [-1, 10_001])
async def test_wait_out_of_range_is_a_field_error(wait_ms: int) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        await Harness().service.stats(consistency_token="v1.0-0", wait_ms=wait_ms)
    assert caught.value.field == "wait_ms"


async def test_token_already_covered_answers_after_one_read() -> None:
    h = Harness()
    for _ in range(5):
        h.record("1.00", partition=2)  # offsets 0..4 folded: next offset 5
    body = await response(h, consistency_token="v1.2-4")
    assert body.count == 5
    assert h.reader.reads == 1
    assert h.metrics.waits == ["hit"]
    assert h.metrics.kinds == ["consistency"]


async def test_token_covered_after_a_notification() -> None:
    h = Harness()
    h.record("1.00", partition=0)  # next offset 1
    task = asyncio.create_task(response(h, consistency_token="v1.0-1", wait_ms=5000))
    await until(lambda: h.board.waiting == 1)
    assert not task.done()
    h.record("2.00", partition=0)  # the projector folds offset 1 ...
    h.board.observe(ProjectionPosition(1, {0: 2}))  # ... and the listener relays its notification
    body = await asyncio.wait_for(task, 1)
    assert (body.count, body.sum) == (2, "3.00")
    assert h.reader.reads == 2  # one read before waiting, one after the wake-up: no polling
    assert h.metrics.waits == ["hit"]


async def test_unrelated_progress_does_not_release_a_waiter() -> None:
    h = Harness()
    task = asyncio.create_task(response(h, consistency_token="v1.0-0.1-3", wait_ms=5000))
    await until(lambda: h.board.waiting == 1)
    checks = h.board.checks
    h.board.observe(ProjectionPosition(1, {0: 1}))  # partition 1 still short
    await until(lambda: h.board.checks > checks)  # the waiter woke and re-checked its token
    assert not task.done()
    assert h.reader.reads == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.board.waiting == 0


async def test_token_not_reached_in_time_times_out() -> None:
    h = Harness()
    h.record("1.00")
    with pytest.raises(ConsistencyTimeoutError):
        await h.service.stats(consistency_token="v1.0-1", wait_ms=30)
    assert h.reader.reads == 1  # it waited on the board, it did not poll the store
    assert h.metrics.waits == ["timeout"]


async def test_zero_wait_answers_or_times_out_at_once() -> None:
    h = Harness()
    h.record("1.00")
    assert (await response(h, consistency_token="v1.0-0", wait_ms=0)).count == 1
    with pytest.raises(ConsistencyTimeoutError):
        await h.service.stats(consistency_token="v1.0-1", wait_ms=0)


async def test_default_wait_comes_from_configuration() -> None:
    h = Harness(default_wait_ms=20)
    with pytest.raises(ConsistencyTimeoutError, match=r"0\.02 s"):
        await h.service.stats(consistency_token="v1.0-0")


async def test_a_board_ahead_of_the_store_is_corrected_not_spun_on() -> None:
    # The board believes version 1 covers the token, but the store answers with a rebuilt
    # version that is behind: the service must believe the store and wait, not re-read in
    # a loop.
    h = Harness()
    h.board.observe(ProjectionPosition(1, {0: 100}))
    h.reader.active_version = 2
    h.reader.put_partition(0, PartitionRow(next_offset=3), version=2)
    with pytest.raises(ConsistencyTimeoutError):
        await h.service.stats(consistency_token="v1.0-50", wait_ms=50)
    assert h.reader.reads == 1
    assert h.board.position == ProjectionPosition(2, {0: 3})


async def test_window_with_a_token_waits_then_reads_the_window() -> None:
    h = Harness()
    h.record("5.00", second=SECOND)
    h.record("7.00", second=SECOND - 7200)
    body = await response(h, consistency_token="v1.0-1", window_seconds=60)
    assert (body.count, body.sum) == (1, "5.00")
    assert body.as_of.window is not None
