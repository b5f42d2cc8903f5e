"""The position board (what a process knows of the projection) and notification payloads."""

from __future__ import annotations

import asyncio
import json

import pytest

from query_api.adapters.postgres_listener import parse_payload
from query_api.ports import ProjectionPosition
from query_api.position_board import PositionBoard


def test_offsets_only_grow_within_a_version() -> None:
    board = PositionBoard()
    board.observe(ProjectionPosition(1, {0: 5, 1: 7}))
    board.observe(ProjectionPosition(1, {0: 3, 2: 1}))  # an older observation of 0: ignored
    assert board.position == ProjectionPosition(1, {0: 5, 1: 7, 2: 1})


def test_another_version_replaces_what_was_known() -> None:
    board = PositionBoard()
    board.observe(ProjectionPosition(1, {0: 5, 1: 7}))
    board.observe(ProjectionPosition(2, {0: 2}))
    assert board.position == ProjectionPosition(2, {0: 2})
    board.replace(ProjectionPosition(2, {0: 1}))
    assert board.position == ProjectionPosition(2, {0: 1})


def test_covers_needs_every_partition_past_the_token() -> None:
    board = PositionBoard()
    assert not board.covers({0: 0})  # knows nothing yet
    board.observe(ProjectionPosition(1, {0: 5}))
    assert board.covers({0: 4})
    assert not board.covers({0: 5})
    assert not board.covers({0: 0, 3: 0})  # partition 3 never folded


async def test_waiters_wake_on_the_change_that_covers_them() -> None:
    board = PositionBoard()
    board.observe(ProjectionPosition(1, {0: 1}))
    first = asyncio.create_task(board.wait_until_covers({0: 1}))
    second = asyncio.create_task(board.wait_until_covers({0: 5}))
    async with asyncio.timeout(1):
        while board.waiting < 2:
            await asyncio.sleep(0)
    board.observe(ProjectionPosition(1, {0: 2}))
    await asyncio.wait_for(first, 1)
    assert not second.done()
    board.observe(ProjectionPosition(1, {0: 6}))
    await asyncio.wait_for(second, 1)
    assert board.waiting == 0


async def test_a_timed_out_waiter_leaves_the_board() -> None:
    board = PositionBoard()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await board.wait_until_covers({0: 0})
    assert board.waiting == 0


def test_payload_is_parsed() -> None:
    payload = json.dumps({"version": 3, "offsets": {"0": 10, "5": 2}})
    assert parse_payload(payload) == ProjectionPosition(3, {0: 10, 5: 2})


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        "[]",
        json.dumps({"offsets": {"0": 1}}),
        json.dumps({"version": "1", "offsets": {}}),
        json.dumps({"version": True, "offsets": {}}),
        json.dumps({"version": 1, "offsets": {"x": 1}}),
        json.dumps({"version": 1, "offsets": [1, 2]}),
    ],
)
def test_malformed_payloads_are_refused(payload: str) -> None:
    assert parse_payload(payload) is None
