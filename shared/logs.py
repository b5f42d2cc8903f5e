"""Logging for every process: one format per process, every library's records included
(uvicorn's too). JSON lines when stderr is not a terminal (log files, containers); readable
text lines on a terminal. `LOG_FORMAT=json|text` overrides the choice."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# uvicorn adds `color_message` (the message with terminal colour codes) to its records.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    request_id = request_id_var.get()
    if request_id is not None:
        extras = {"request_id": request_id, **extras}
    return extras


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`12:00:00.123 INFO  projector.consumer: folded 5 events  partition=3`, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += "  " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def pick_formatter(log_format: str, stream: TextIO) -> logging.Formatter:
    """`json`, `text`, or `auto`: text on a terminal, JSON otherwise."""
    if log_format == "text" or (log_format == "auto" and stream.isatty()):
        return TextFormatter()
    return JsonFormatter()


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
    given libraries: during a broker outage aiokafka logs the same connection error in a
    tight loop. The next record that passes says how many were dropped."""

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


@dataclass(frozen=True, slots=True)
class Noise:
    """A record known to be routine while a consumer joins its group on a clean start: from
    `logger`, with the message template `template`, and (when `errors` is not empty) whose
    first argument is an exception of one of the classes named in `errors` (by name: shared
    imports no driver)."""

    logger: str
    template: str
    errors: tuple[str, ...] = ()

    def matches(self, record: logging.LogRecord) -> bool:
        if record.name != self.logger or record.msg != self.template:
            return False
        if not self.errors:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return bool(args) and type(args[0]).__name__ in self.errors


_COORDINATOR = "aiokafka.consumer.group_coordinator"

# What a consumer logs while the broker creates `__consumer_offsets` on the first join and
# elects its leaders (the group coordinator "is not available" or "is loading"), and the
# coordinator it drops meanwhile. Nothing else: a failed request, a heartbeat, a commit, an
# authorization or a fatal join error keeps its level, at start as later.
COORDINATOR_START_NOISE = (
    Noise(
        _COORDINATOR,
        "Group Coordinator Request failed: %s",
        ("GroupCoordinatorNotAvailableError", "GroupLoadInProgressError"),
    ),
    Noise(_COORDINATOR, "Marking the coordinator dead (node %s)for group %s."),
)


class StartupNoise(logging.Filter):
    """Records known to be routine on a clean start (`noise`) become INFO during the first
    `grace` seconds of the process; every other record, and these later, keep their level."""

    def __init__(self, noise: tuple[Noise, ...] = COORDINATOR_START_NOISE, grace: float = 60.0):
        super().__init__()
        self._noise = noise
        self._until = time.monotonic() + grace

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno > logging.INFO
            and time.monotonic() < self._until
            and any(noise.matches(record) for noise in self._noise)
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(
    level: str, log_format: str = "auto", *, stream: TextIO | None = None
) -> None:
    """One handler on the root logger, used by every library. uvicorn's command line installs
    its own handlers and plain-text format before our app factory runs: they are removed so
    that its records reach ours."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(pick_formatter(log_format, handler.stream))
    handler.addFilter(StartupNoise())
    handler.addFilter(RedactTokens())
    handler.addFilter(Throttle(("aiokafka",)))
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not logger.propagate and not logger.handlers:
            continue  # switched off (`--no-access-log`): stays off
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
