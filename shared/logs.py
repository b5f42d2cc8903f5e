"""Structured logging: one JSON object per line, with the current request id."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# A JWT is three base64url segments; its JSON header makes the first one start with "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
REDACTED = "[redacted-token]"


class RedactTokens(logging.Filter):
    """Blank out anything shaped like a JWT. uvicorn's access log prints the path with its
    query string, so a client that puts its token there (`?access_token=...`) would have it
    logged whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "eyJ" in record.msg:
            record.msg = _JWT.sub(REDACTED, record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _JWT.sub(REDACTED, arg) if isinstance(arg, str) and "eyJ" in arg else arg
                for arg in record.args
            )
        return True


class Throttle(logging.Filter):
    """At most one record per `interval` seconds for each (logger, message template) of the
    given libraries: during a broker outage aiokafka logs the same connection error
    thousands of times a second. The next record that passes says how many were dropped."""

    def __init__(
        self,
        prefixes: tuple[str, ...],
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, record.msg)
        now = self._clock()
        last, dropped = self._seen.get(key, (-self._interval, 0))
        if now - last < self._interval:
            self._seen[key] = (last, dropped + 1)
            return False
        self._seen[key] = (now, 0)
        if dropped:
            record.suppressed = dropped
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactTokens())
    handler.addFilter(Throttle(("aiokafka",)))
    for name in ("uvicorn.access", "uvicorn.error"):  # their own handlers, not ours
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
