"""Log lines are JSON with the request id, and never carry a whole JWT."""

from __future__ import annotations

import json
import logging

import jwt

from shared.logs import REDACTED, JsonFormatter, RedactTokens, Throttle, request_id_var


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
