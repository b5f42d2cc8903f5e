"""Log lines are JSON with the request id, and never carry a whole JWT."""

from __future__ import annotations

import ast
import inspect
import io
import json
import logging

import aiokafka.errors as aiokafka_errors
import jwt
import pytest
from aiokafka.consumer import group_coordinator
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaConnectionError,
)

from shared.logs import (
    COORDINATOR_START_NOISE,
    REDACTED,
    JsonFormatter,
    RedactTokens,
    StartupNoise,
    TextFormatter,
    Throttle,
    configure_logging,
    pick_formatter,
    request_id_var,
)


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("test", logging.INFO, __file__, 1, msg, args, None)


def test_a_token_in_the_message_or_its_arguments_is_redacted() -> None:
    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
    entry = record('GET /stats?access_token=%s HTTP/1.1 "%s"', token, "ok")
    assert RedactTokens().filter(entry)
    assert token not in entry.getMessage()
    assert REDACTED in entry.getMessage()
    inline = record(f"Authorization: Bearer {token}")
    RedactTokens().filter(inline)
    assert inline.getMessage() == f"Authorization: Bearer {REDACTED}"


def test_ordinary_messages_are_untouched() -> None:
    entry = record("folded %d events from %s", 5, "partition 3")
    RedactTokens().filter(entry)
    assert entry.getMessage() == "folded 5 events from partition 3"


def test_json_lines_carry_the_request_id_and_extra_fields() -> None:
    entry = record("hello")
    entry.partition = 3
    token = request_id_var.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(entry))
    finally:
        request_id_var.reset(token)
    assert (line["message"], line["request_id"], line["partition"]) == ("hello", "req-1", 3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_library_floods_are_throttled_per_message_and_counted() -> None:
    clock = FakeClock()
    throttle = Throttle(("aiokafka",), interval=60, clock=clock)

    def kafka(msg: str) -> logging.LogRecord:
        entry = record(msg)
        entry.name = "aiokafka.cluster"
        return entry

    passed = [throttle.filter(kafka("Unable to update metadata")) for _ in range(1000)]
    assert passed.count(True) == 1
    assert throttle.filter(kafka("another message"))
    assert all(throttle.filter(record("ours")) for _ in range(3))  # our own logs: never

    clock.now += 60  # the interval is over: the next one passes and says how many were dropped
    after = kafka("Unable to update metadata")
    assert throttle.filter(after)
    assert after.__dict__["suppressed"] == 999
    again = kafka("Unable to update metadata")
    assert not throttle.filter(again)  # a new interval began with the one that passed
    clock.now += 60
    quiet = kafka("Unable to update metadata")
    assert throttle.filter(quiet)
    assert quiet.__dict__["suppressed"] == 1
    assert json.loads(JsonFormatter().format(after))["suppressed"] == 999


def uvicorn_style(name: str, level: int, msg: str) -> logging.LogRecord:
    entry = logging.LogRecord(name, level, __file__, 1, msg, (), None)
    entry.color_message = f"\x1b[1m{msg}\x1b[0m"  # as uvicorn adds it
    return entry


def test_json_lines_drop_uvicorns_colour_codes() -> None:
    line = json.loads(JsonFormatter().format(uvicorn_style("uvicorn.error", logging.INFO, "up")))
    assert line["message"] == "up"
    assert "color_message" not in line


def test_text_lines_are_readable_and_carry_the_extras() -> None:
    entry = record("folded %d events", 5)
    entry.partition = 3
    line = TextFormatter().format(entry)
    assert " INFO " in line
    assert line.endswith("test: folded 5 events  partition=3")
    assert "{" not in line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_format_follows_the_terminal_unless_forced() -> None:
    assert isinstance(pick_formatter("auto", Terminal()), TextFormatter)
    assert isinstance(pick_formatter("auto", io.StringIO()), JsonFormatter)
    assert isinstance(pick_formatter("json", Terminal()), JsonFormatter)
    assert isinstance(pick_formatter("text", io.StringIO()), TextFormatter)


def test_uvicorns_own_handlers_give_way_to_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    uvicorn_logger = logging.getLogger("uvicorn.error")
    plain = io.StringIO()
    uvicorn_logger.addHandler(logging.StreamHandler(plain))  # as uvicorn's CLI does
    uvicorn_logger.propagate = False
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    uvicorn_logger.info("Started server process [%d]", 42)
    assert plain.getvalue() == ""
    assert json.loads(out.getvalue())["message"] == "Started server process [42]"


def coordinator(level: int, template: str, *args: object) -> logging.LogRecord:
    entry = logging.LogRecord(COORDINATOR, level, __file__, 1, template, args, None)
    entry.levelname = logging.getLevelName(level)
    return entry


COORDINATOR = "aiokafka.consumer.group_coordinator"
LOOKUP_FAILED = "Group Coordinator Request failed: %s"
MARKED_DEAD = "Marking the coordinator dead (node %s)for group %s."


def startup_noise() -> list[logging.LogRecord]:
    """What a consumer logs on a clean start while `__consumer_offsets` is created."""
    return [
        coordinator(logging.ERROR, LOOKUP_FAILED, GroupCoordinatorNotAvailableError()),
        coordinator(logging.ERROR, LOOKUP_FAILED, GroupLoadInProgressError()),
        coordinator(logging.WARNING, MARKED_DEAD, 1, "g"),
    ]


def real_faults() -> list[logging.LogRecord]:
    """From the same logger, in the same first minute: real faults."""
    return [
        coordinator(logging.ERROR, LOOKUP_FAILED, GroupAuthorizationFailedError()),
        coordinator(logging.ERROR, LOOKUP_FAILED, KafkaConnectionError()),
        coordinator(
            logging.ERROR,
            "Error sending %s to node %s [%s] -- marking coordinator dead",
            "JoinGroupRequest",
            1,
            KafkaConnectionError(),
        ),
        coordinator(logging.ERROR, "Heartbeat session expired - marking coordinator dead"),
        coordinator(logging.ERROR, "OffsetCommit failed for group %s - %s", "g", "X"),
        coordinator(logging.ERROR, "Attempt to join group failed due to fatal error: %s", "X"),
        coordinator(
            logging.WARNING, "Heartbeat failed for group %s because it is rebalancing", "g"
        ),
    ]


def test_only_known_start_up_noise_is_demoted_and_only_at_first() -> None:
    starting = StartupNoise(grace=60)
    for entry in startup_noise():
        assert starting.filter(entry)
        assert (entry.levelno, entry.levelname) == (logging.INFO, "INFO"), entry.msg
    for entry in real_faults():
        level = entry.levelno
        starting.filter(entry)
        assert entry.levelno == level, entry.getMessage()
    ours = record("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    ours.levelno, ours.levelname = logging.ERROR, "ERROR"
    starting.filter(ours)
    assert ours.levelname == "ERROR"  # the same words from another logger are not the noise
    later = StartupNoise(grace=0)
    for entry in startup_noise():
        level = entry.levelno
        later.filter(entry)
        assert entry.levelno == level


def test_the_noise_templates_are_aiokafkas_own() -> None:
    """A renamed message in a new aiokafka would silently stop matching: hold them together."""
    tree = ast.parse(inspect.getsource(group_coordinator))  # adjacent literals joined
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    for noise in COORDINATOR_START_NOISE:
        assert noise.logger == group_coordinator.__name__
        assert noise.template in strings
        for name in noise.errors:
            assert issubclass(getattr(aiokafka_errors, name), aiokafka_errors.KafkaError)


def test_a_switched_off_access_log_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "handlers", [])  # what `uvicorn --no-access-log` leaves
    monkeypatch.setattr(access, "propagate", False)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    access.info('127.0.0.1 - "GET /stats HTTP/1.1" 200')
    assert out.getvalue() == ""
