"""The query API's configuration, built once in the composition root from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import (
    DEFAULT_CLOCK_SKEW_SECONDS,
    ClockSkewSettings,
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
    # How far in the future the write side accepts events (MAX_CLOCK_SKEW_SECONDS).
    clock_skew_seconds: float = DEFAULT_CLOCK_SKEW_SECONDS
    progress_recheck_seconds: float = 0.5  # the listener's safety re-check while requests wait

    @classmethod
    def from_environment(cls) -> QueryConfig:
        return cls(
            database=DatabaseSettings(),
            jwt=JwtSettings(),
            query=QuerySettings(),
            log=LogSettings(),
            clock_skew_seconds=ClockSkewSettings().max_clock_skew_seconds,
        )
