"""The query API's configuration, built once in the composition root from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import (
    CommandSettings,
    DatabaseSettings,
    JwtSettings,
    LogSettings,
    QuerySettings,
)


@dataclass(frozen=True, slots=True)
class QueryConfig:
    database: DatabaseSettings
    jwt: JwtSettings
    query: QuerySettings
    log: LogSettings
    clock_skew_seconds: float = 5.0  # how far in the future the write side accepts events
    progress_recheck_seconds: float = 0.5  # the listener's safety re-check while requests wait

    @classmethod
    def from_environment(cls) -> QueryConfig:
        return cls(
            database=DatabaseSettings(),
            jwt=JwtSettings(),
            query=QuerySettings(),
            log=LogSettings(),
            # The same MAX_CLOCK_SKEW_SECONDS the command API validates timestamps with:
            # windows include future-stamped events up to that far ahead.
            clock_skew_seconds=CommandSettings().max_clock_skew_seconds,
        )
