"""The PostgreSQL adapters hand the fold loop `StoreUnavailable` for every driver failure it
should back off from and retry, `RecordRefusedError` (in a commit) for a value the server
refuses, and let everything else through."""

from __future__ import annotations

import asyncpg
import pytest

from projector.adapters.postgres_store import (
    refused_or_unavailable_on_failure,
    unavailable_on_failure,
)
from projector.errors import RecordRefusedError, StoreUnavailable, VersionChangedError

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


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_in_a_commit_driver_failures_stay_transient(error: Exception) -> None:
    with pytest.raises(StoreUnavailable), refused_or_unavailable_on_failure():
        raise error


REFUSED = [  # what one record's value can cause
    asyncpg.StringDataRightTruncationError("value too long"),  # 22001
    asyncpg.NumericValueOutOfRangeError("numeric field overflow"),  # 22003
    asyncpg.InvalidDatetimeFormatError("invalid input syntax for type timestamp"),  # 22007
    asyncpg.DatetimeFieldOverflowError("date/time field value out of range"),  # 22008
    asyncpg.CharacterNotInRepertoireError("invalid byte sequence"),  # 22021
    asyncpg.UntranslatableCharacterError("character has no equivalent"),  # 22P05
    asyncpg.ProgramLimitExceededError("index row size exceeds maximum"),  # 54000
]


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: type(e).__name__)
def test_in_a_commit_a_value_error_is_a_refused_record(error: Exception) -> None:
    with pytest.raises(RecordRefusedError), refused_or_unavailable_on_failure():
        raise error


NOT_A_RECORDS_DOING = [  # a schema drift or a bug of ours: every record would be refused
    asyncpg.UniqueViolationError("duplicate key"),  # 23505
    asyncpg.CheckViolationError("new row violates check constraint"),  # 23514
    asyncpg.NotNullViolationError("null value in column"),  # 23502
    asyncpg.ForeignKeyViolationError("violates foreign key constraint"),  # 23503
    asyncpg.InvalidTextRepresentationError("invalid input syntax for type numeric"),  # 22P02
    asyncpg.DivisionByZeroError("division by zero"),  # 22012
    asyncpg.UndefinedTableError("no table"),
]


@pytest.mark.parametrize("error", NOT_A_RECORDS_DOING, ids=lambda e: type(e).__name__)
def test_in_a_commit_other_server_errors_stay_transient(error: Exception) -> None:
    with pytest.raises(StoreUnavailable), refused_or_unavailable_on_failure():
        raise error
