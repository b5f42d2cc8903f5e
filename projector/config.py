"""The projector's configuration, built once in the composition root from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import DatabaseSettings, KafkaSettings, LogSettings, ProjectorSettings


@dataclass(frozen=True, slots=True)
class ProjectorConfig:
    kafka: KafkaSettings
    database: DatabaseSettings
    projector: ProjectorSettings
    log: LogSettings

    @classmethod
    def from_environment(cls) -> ProjectorConfig:
        return cls(
            kafka=KafkaSettings(),
            database=DatabaseSettings(),
            projector=ProjectorSettings(),
            log=LogSettings(),
        )
