"""The command API's configuration, built once in the composition root from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import (
    ClockSkewSettings,
    CommandSettings,
    JwtSettings,
    KafkaSettings,
    LogSettings,
)


@dataclass(frozen=True, slots=True)
class CommandConfig:
    kafka: KafkaSettings
    command: CommandSettings
    clock_skew: ClockSkewSettings
    jwt: JwtSettings
    log: LogSettings

    @classmethod
    def from_environment(cls) -> CommandConfig:
        return cls(
            kafka=KafkaSettings(),
            command=CommandSettings(),
            clock_skew=ClockSkewSettings(),
            jwt=JwtSettings(),
            log=LogSettings(),
        )
