"""When to retry and how long to wait: 503 and other gateway answers that mean "not done,
come back", 429, and transport errors (refused or lost connections, timeouts) are retried
with jittered exponential back-off that never waits less than the server's `Retry-After`;
every other 4xx is final. A request is given up after `give_up_after` seconds or
`max_attempts` attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 502/504 come from a proxy in front (nginx in compose): the request may or may not have
# reached the API, which is exactly a 503's "not confirmed". Retrying is safe because every
# write carries its transaction id.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`base` seconds doubled per attempt up to `cap`, full jitter, at least `Retry-After`."""

    base: float = 0.1
    cap: float = 5.0
    give_up_after: float = 120.0
    max_attempts: int | None = None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1` (`attempt` counts from 1)."""
        backoff = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return backoff if retry_after is None else max(retry_after, backoff)

    def exhausted(self, attempt: int, elapsed: float, next_delay: float) -> bool:
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return True
        return elapsed + next_delay > self.give_up_after


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP-date; None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
