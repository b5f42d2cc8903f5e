"""Configuration, split by concern. Read from the environment first, then an optional `.env`.

Nothing else in the project reads `os.environ`; each process builds the settings it needs
once, in its composition root.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# hide_input_in_errors: a refused JWT_SECRET must not be echoed in the startup error.
_ENV = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
)

MIN_SECRET_BYTES = 32


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "transactions.v1"
    partitions: int = Field(default=6, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1)
    # Producer failover (see docs/reliability.md): how long one produce request to a broker
    # may go unanswered before it is retried (unset: the publish timeout), and how old the
    # cluster metadata may get before a refresh nobody asked for (errors refresh it at once).
    request_timeout_ms: int | None = Field(default=None, ge=100, le=120_000)
    metadata_max_age_ms: int = Field(default=300_000, ge=100)


class DatabaseSettings(BaseSettings):
    model_config = _ENV

    database_url: SecretStr = SecretStr("postgresql://txstats@127.0.0.1:5433/txstats")
    database_pool_min: int = Field(default=1, ge=1)
    database_pool_max: int = Field(default=10, ge=1)


class JwtSettings(BaseSettings):
    """HS256 with `JWT_SECRET` (required, >= 32 bytes); RS256/ES256 with `JWT_PUBLIC_KEY`."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="JWT_")

    secret: SecretStr
    public_key: SecretStr | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_seconds: int = Field(default=0, ge=0, le=300)

    @field_validator("secret")
    @classmethod
    def _secret_is_strong(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            msg = f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes"
            raise ValueError(msg)
        return value

    @field_validator("public_key")
    @classmethod
    def _blank_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("audience", "issuer")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class LogSettings(BaseSettings):
    model_config = _ENV

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: readable text when stderr is a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"


class ClockSkewSettings(BaseSettings):
    """How far in the future an event's timestamp may be: the command API refuses later ones,
    the query API's windows include events up to that far ahead."""

    model_config = _ENV

    # At most 60: a window read then touches at most 120 bucket rows (see query_api/windows.py).
    max_clock_skew_seconds: float = Field(default=5.0, ge=0, le=60)


class CommandSettings(BaseSettings):
    model_config = _ENV

    publish_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # How long a partition's record batch may fill before it goes to the producer; 0: until
    # the event loop has run what is ready (the publishes of the same turn).
    producer_linger_ms: int = Field(default=0, ge=0, le=1000)


class QuerySettings(BaseSettings):
    model_config = _ENV

    stats_require_auth: bool = False
    default_wait_ms: int = Field(default=2000, ge=0, le=10_000)
    # GET /stats/stream (Server-Sent Events), per process
    stream_max_hz: float = Field(default=10.0, gt=0, le=100)
    stream_max_clients: int = Field(default=1000, ge=1, le=100_000)
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    stream_queue_size: int = Field(default=32, ge=1, le=10_000)
    stream_send_timeout_seconds: float = Field(default=30.0, gt=0, le=600)


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="PROJECTOR_")

    group_id: str = "txstats-projector"
    max_batch: int = Field(default=20_000, ge=1, le=100_000)
    poll_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8002, ge=0, le=65535)
