"""When to retry and how long to wait: every 5xx (503 and the gateway answers that mean "not
done, come back", and a 500, which may come after the events reached the log), 429, and
transport errors (refused or lost connections, timeouts) are retried with jittered
exponential back-off that never waits less than the server's `Retry-After`; every other
answer is final. A request is given up after `give_up_after` seconds or `max_attempts`
attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retried(status: int) -> bool:
    """Whether an answer with `status` means "not confirmed, ask again". A 5xx never says the
    request was not done: 502/504 come from a proxy in front (nginx in compose) whether or
    not the request reached the API, and a 500 may come after the publish succeeded. So a
    write answered so is retried, which is safe because it carries the transaction ids of its
    first attempt, and it ends as given up (not confirmed), never as refused."""
    return status == 429 or 500 <= status <= 599


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
