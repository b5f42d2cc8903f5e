"""Sliding windows over event time, resolved to the projection's time buckets.

Definition. `window=N` covers the N whole seconds ending with the current second: every event
whose event-time epoch second is >= floor(now) - N + 1. Events stamped in the future (the write
side accepts up to `MAX_CLOCK_SKEW_SECONDS` ahead) are included; as a guard that keeps the
read bounded, nothing later than the end of the minute containing floor(now) + allowance is
read. Resolution: one second at the start of the window, since the rest is read whole minutes.

Two-level read, so that a window's cost depends on its length only, never on the volume.
The partial minute at the start of the window comes from 1-second buckets [start, start of
the next minute - 1] (less than a minute of them); every minute from there to the minute
containing floor(now) + allowance comes from 1-minute buckets (floor((N + allowance - 1) / 60)
+ 1 of them at most). `max_bucket_rows(N, allowance)` is that bound, per partition (buckets are
kept per partition; the projector's roll-up merges those commits are past into one row each);
a read adds one `projection_active` row and one `partition_totals` row per partition for
`as_of`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from query_api.errors import InvalidQueryError
from query_api.ports import BucketRange
from shared.projection import SECONDS_PER_MINUTE

# The one home of the window range: routes declare it as their parameters' bounds (so the
# OpenAPI document shows it and HTTP answers 422 before anything else), and `plan_window`, the
# one way to a window read, is its one runtime check: no caller can plan an unbounded read.
MIN_WINDOW_SECONDS = 1
MAX_WINDOW_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class WindowPlan:
    seconds: int
    start_second: int  # first epoch second in the window
    current_second: int  # floor(now)
    last_second: int  # last epoch second a bucket read can contain (the guard)
    buckets: BucketRange


def future_allowance(clock_skew_seconds: float) -> int:
    """Whole seconds of future event time a window includes past the current second."""
    return max(0, math.ceil(clock_skew_seconds))


def plan_window(*, now: float, seconds: int, allowance: int) -> WindowPlan:
    """The buckets of the window of `seconds` ending at `now`; a length outside the range is
    a field error of `window`."""
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        msg = f"window must be {MIN_WINDOW_SECONDS}..{MAX_WINDOW_SECONDS} seconds"
        raise InvalidQueryError("window", msg)
    current = math.floor(now)
    start = current - seconds + 1
    first_minute = -(-start // SECONDS_PER_MINUTE)  # ceil: the first minute wholly inside
    last_minute = (current + allowance) // SECONDS_PER_MINUTE
    buckets = BucketRange(
        first_second=start,
        last_second=first_minute * SECONDS_PER_MINUTE - 1,
        first_minute=first_minute,
        last_minute=last_minute,
    )
    return WindowPlan(
        seconds=seconds,
        start_second=start,
        current_second=current,
        last_second=(last_minute + 1) * SECONDS_PER_MINUTE - 1,
        buckets=buckets,
    )


def max_bucket_rows(*, seconds: int, allowance: int) -> int:
    """An upper bound of `plan_window(...).buckets.rows` for every `now`."""
    head = SECONDS_PER_MINUTE - 1
    minutes = (seconds + allowance - 1) // SECONDS_PER_MINUTE + 1
    return head + minutes
