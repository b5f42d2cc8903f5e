"""The PostgreSQL adapters hand the fold loop `StoreUnavailable` for every driver failure it
should back off from and retry, and let everything else through."""

from __future__ import annotations

import asyncpg
import pytest

from projector.adapters.postgres_store import unavailable_on_failure
from projector.errors import StoreUnavailable, VersionChangedError

TRANSIENT = [
    asyncpg.InternalClientError("cannot switch to state 15"),  # the server died mid-statement
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.PostgresConnectionError("connection refused"),
    asyncpg.DeadlockDetectedError("deadlock detected"),
    ConnectionResetError(),
    TimeoutError(),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_driver_failures_become_store_unavailable(error: Exception) -> None:
    with pytest.raises(StoreUnavailable), unavailable_on_failure():
        raise error


def test_the_projectors_own_errors_pass_through() -> None:
    with pytest.raises(VersionChangedError), unavailable_on_failure():
        raise VersionChangedError(2)
