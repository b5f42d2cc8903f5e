"""Window arithmetic: which buckets a window reads, at every minute edge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from query_api.errors import InvalidQueryError
from query_api.windows import (
    MAX_WINDOW_SECONDS,
    future_allowance,
    max_bucket_rows,
    plan_window,
)

MINUTE_START = 1_700_000_040  # an epoch second at :00 of a minute
assert MINUTE_START % 60 == 0


def covered_seconds(now: float, seconds: int, allowance: int) -> list[int]:
    """Every epoch second a window read covers, expanded from its second and minute ranges."""
    b = plan_window(now=now, seconds=seconds, allowance=allowance).buckets
    out = list(range(b.first_second, b.last_second + 1))
    for minute in range(b.first_minute, b.last_minute + 1):
        out.extend(range(minute * 60, minute * 60 + 60))
    return out


@pytest.mark.parametrize(
    ("offset", "seconds", "expected"),
    [
        # now at :00.0 of the minute -> window=1 is that second (and the rest of its minute)
        (0.0, 1, (MINUTE_START, MINUTE_START - 1, MINUTE_START // 60, MINUTE_START // 60)),
        # now at :00.999: still the same current second
        (0.999, 60, (MINUTE_START - 59, MINUTE_START - 1, MINUTE_START // 60, MINUTE_START // 60)),
        # now at :59: a 60 s window is exactly the current minute, read as one minute bucket
        (59.5, 60, (MINUTE_START, MINUTE_START - 1, MINUTE_START // 60, MINUTE_START // 60 + 1)),
        # now at :30, 61 s: 29 seconds of the previous minute, then this minute
        (30.2, 61, (MINUTE_START - 30, MINUTE_START - 1, MINUTE_START // 60, MINUTE_START // 60)),
    ],
)
def test_plan_at_minute_edges(
    offset: float, seconds: int, expected: tuple[int, int, int, int]
) -> None:
    b = plan_window(now=MINUTE_START + offset, seconds=seconds, allowance=5).buckets
    assert (b.first_second, b.last_second, b.first_minute, b.last_minute) == expected


def test_window_starts_at_current_second_minus_n_plus_one() -> None:
    plan = plan_window(now=MINUTE_START + 10.7, seconds=11, allowance=5)
    assert plan.current_second == MINUTE_START + 10
    assert plan.start_second == MINUTE_START  # seconds :00..:10 are the 11 seconds
    assert plan.last_second == MINUTE_START + 59  # the minute holding now + 5 s ends here


def test_allowance_crossing_into_the_next_minute_adds_that_minute() -> None:
    plan = plan_window(now=MINUTE_START + 57, seconds=10, allowance=5)
    assert plan.buckets.last_minute == MINUTE_START // 60 + 1
    assert plan.last_second == MINUTE_START + 119


def test_aligned_start_reads_no_second_bucket() -> None:
    b = plan_window(now=MINUTE_START + 59, seconds=120, allowance=0).buckets
    assert b.first_second > b.last_second  # empty second range
    assert b.rows == 2


@pytest.mark.parametrize("seconds", [0, -1, MAX_WINDOW_SECONDS + 1])
def test_out_of_range_windows_are_refused(seconds: int) -> None:
    with pytest.raises(InvalidQueryError, match="window") as caught:
        plan_window(now=MINUTE_START, seconds=seconds, allowance=5)
    assert caught.value.field == "window"


def test_future_allowance_is_whole_seconds() -> None:
    assert future_allowance(5) == 5
    assert future_allowance(4.2) == 5
    assert future_allowance(0) == 0


# The bound docs/api.md states: "1-second buckets for the partial minute at its start (at most
# 59 rows) and 1-minute buckets for the rest (at most 61), so at most 120 bucket rows".
SECOND_ROWS_BOUND = 59
MINUTE_ROWS_BOUND = 61


def test_bound_for_an_hour_with_the_default_allowance() -> None:
    assert max_bucket_rows(seconds=3600, allowance=5) == SECOND_ROWS_BOUND + MINUTE_ROWS_BOUND
    plans = [
        plan_window(now=MINUTE_START + s, seconds=n, allowance=5).buckets
        for n in range(1, MAX_WINDOW_SECONDS + 1)
        for s in range(60)
    ]
    assert max(p.last_second - p.first_second + 1 for p in plans) <= SECOND_ROWS_BOUND
    assert max(p.last_minute - p.first_minute + 1 for p in plans) <= MINUTE_ROWS_BOUND
    assert max(p.rows for p in plans) <= SECOND_ROWS_BOUND + MINUTE_ROWS_BOUND


@given(
    now=st.floats(min_value=1e9, max_value=4e9, allow_nan=False),
    seconds=st.integers(min_value=1, max_value=MAX_WINDOW_SECONDS),
    allowance=st.integers(min_value=0, max_value=120),
)
def test_ranges_tile_the_window_exactly_and_stay_bounded(
    now: float, seconds: int, allowance: int
) -> None:
    plan = plan_window(now=now, seconds=seconds, allowance=allowance)
    covered = covered_seconds(now, seconds, allowance)
    assert len(covered) == len(set(covered))  # no bucket counted twice
    assert covered == list(range(plan.start_second, plan.last_second + 1))  # no gap
    assert plan.start_second == int(now // 1) - seconds + 1
    assert plan.last_second >= plan.current_second + allowance  # future events included
    assert plan.last_second - (plan.current_second + allowance) < 60  # ...to that minute's end
    assert plan.buckets.first_second - plan.buckets.last_second <= 1
    assert plan.buckets.last_second - plan.buckets.first_second + 1 <= 59
    assert plan.buckets.rows <= max_bucket_rows(seconds=seconds, allowance=allowance)
