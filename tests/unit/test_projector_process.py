"""The projector process's background tasks: one that fails stops the process at once, with
its error logged, and the process exits non-zero (`run_live` returns `EXIT_FAILED`)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from projector.main import failed, stop_when_failed


async def test_a_background_task_that_fails_is_logged_and_stops_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()

    async def roll_up() -> None:
        raise RuntimeError("an unexpected bug")

    task = asyncio.create_task(roll_up(), name="the bucket roll-up")
    stop_when_failed(task, stop)
    await asyncio.wait_for(stop.wait(), timeout=5)
    assert failed(task)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "the bucket roll-up failed: stopping"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_a_background_task_cancelled_at_shutdown_stops_nothing() -> None:
    stop = asyncio.Event()

    async def roll_up() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(roll_up())
    stop_when_failed(task, stop)
    task.cancel()
    await asyncio.wait([task])
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert not stop.is_set()
    assert not failed(task)
