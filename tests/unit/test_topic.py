"""ensure_topic's check of an existing topic's retention, over the admin client's answer as the
broker gives it: a principal without DESCRIBE_CONFIGS gets an authorization error and no
entries, which says nothing about the retention."""

from __future__ import annotations

import logging

import pytest
from aiokafka.admin.config_resource import ConfigResource
from aiokafka.errors import TopicAuthorizationFailedError, UnknownTopicOrPartitionError
from aiokafka.protocol.admin import DescribeConfigsResponse_v0

from shared.topic import _warn_if_not_kept_forever

TOPIC = "transactions.v1"
TOPIC_RESOURCE = 2  # the protocol's resource type of a topic


class AnsweringAdmin:
    """The one call the check makes, answered with a fixed DescribeConfigs response."""

    def __init__(self, error_code: int, entries: dict[str, str]) -> None:
        rows = [(name, value, False, False, False) for name, value in entries.items()]
        self.response = DescribeConfigsResponse_v0(
            throttle_time_ms=0,
            resources=[(error_code, None, TOPIC_RESOURCE, TOPIC, rows)],
        )

    async def describe_configs(self, resources: list[ConfigResource]) -> list[object]:
        assert [r.name for r in resources] == [TOPIC]
        return [self.response]


async def check(caplog: pytest.LogCaptureFixture, admin: AnsweringAdmin) -> list[tuple[int, str]]:
    with caplog.at_level(logging.INFO, logger="shared.topic"):
        await _warn_if_not_kept_forever(admin, TOPIC)
    return [(r.levelno, r.getMessage()) for r in caplog.records]


async def test_without_describe_configs_the_retention_is_unverified_not_wrong(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged = await check(caplog, AnsweringAdmin(TopicAuthorizationFailedError.errno, {}))
    [(level, message)] = logged
    assert level == logging.WARNING
    assert f"topic {TOPIC}: cannot verify retention (no DESCRIBE_CONFIGS)" in message


async def test_another_error_leaves_the_retention_unverified(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged = await check(caplog, AnsweringAdmin(UnknownTopicOrPartitionError.errno, {}))
    [(level, message)] = logged
    assert level == logging.WARNING
    assert "cannot verify retention" in message
    assert "UnknownTopicOrPartitionError" in message


async def test_a_retention_that_deletes_events_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged = await check(caplog, AnsweringAdmin(0, {"retention.ms": "604800000"}))
    [(level, message)] = logged
    assert level == logging.ERROR
    assert "retention.ms=604800000" in message


async def test_a_log_kept_forever_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    assert await check(caplog, AnsweringAdmin(0, {"retention.ms": "-1"})) == []
