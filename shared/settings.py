"""Configuration, split by concern. Read from the environment first, then an optional `.env`.

Nothing else in the project reads `os.environ`; each process builds the settings it needs
once, in its composition root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    # How every client (producer, consumer, admin) reaches the brokers: TLS and SASL are what
    # the broker's listener speaks (shared/kafka_client.py builds the options once).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None  # unset: the system's CAs
    ssl_certfile: str | None = None  # a client certificate (mutual TLS), with its key
    ssl_keyfile: str | None = None

    @field_validator(
        "sasl_mechanism",
        "sasl_username",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return value or None

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _file_is_readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The clients open these only when they connect, and a connection that fails is
        # retried: a wrong path would be a service that never starts and never says why.
        if value is not None and not (Path(value).is_file() and os.access(value, os.R_OK)):
            msg = f"KAFKA_{str(info.field_name).upper()}={value} is not a readable file"
            raise ValueError(msg)
        return value

    @field_validator("sasl_password")
    @classmethod
    def _blank_password_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        given = {
            "KAFKA_SASL_MECHANISM": self.sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.sasl_username,
            "KAFKA_SASL_PASSWORD": self.sasl_password,
        }
        if sasl and None in given.values():
            missing = ", ".join(name for name, value in given.items() if value is None)
            msg = f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs {missing}"
            raise ValueError(msg)
        files = {
            "KAFKA_SSL_CAFILE": self.ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.ssl_keyfile,
        }
        # A credential or a CA that the protocol would ignore is a mistake: say so rather
        # than connect without it.
        unused = [name for name, value in given.items() if value is not None and not sasl]
        unused += [name for name, value in files.items() if value is not None and not tls]
        if unused:
            msg = (
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} does not use {', '.join(unused)}"
            )
            raise ValueError(msg)
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            msg = "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (a certificate, its key)"
            raise ValueError(msg)
        return self


class DatabaseSettings(BaseSettings):
    """The process's own role: the projector's may change rows, the query API's only read
    (docs/operations.md, PostgreSQL roles). Neither changes the schema."""

    model_config = _ENV

    database_url: SecretStr = SecretStr("postgresql://txstats@127.0.0.1:5433/txstats")
    database_pool_min: int = Field(default=1, ge=1)
    database_pool_max: int = Field(default=10, ge=1)


DEFAULT_PROJECTOR_ROLE = "txstats_projector"
DEFAULT_QUERY_ROLE = "txstats_query"
_ROLE_NAME = r"^[a-z_][a-z0-9_]{0,62}$"


class MigrationSettings(BaseSettings):
    """`python -m projector migrate`: the schema owner's connection, and the roles it grants
    the projector (rows of every table) and the query API (reading them)."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="MIGRATION_")

    database_url: SecretStr | None = None  # unset: DATABASE_URL
    projector_role: str = Field(default=DEFAULT_PROJECTOR_ROLE, pattern=_ROLE_NAME)
    query_role: str = Field(default=DEFAULT_QUERY_ROLE, pattern=_ROLE_NAME)

    @field_validator("database_url")
    @classmethod
    def _blank_url_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None


JwtAlgorithm = Literal["HS256", "RS256", "ES256"]
MAX_TOKEN_LIFETIME_SECONDS = 86_400


class JwtSettings(BaseSettings):
    """HS256 with `JWT_SECRET` (required, >= 32 bytes); RS256/ES256 with `JWT_PUBLIC_KEY`.

    `JWT_ALGORITHMS` (comma-separated) is the allow-list. Unset, it is HS256 without a public
    key, and only the public key's algorithm with one: whoever holds the shared secret must
    not be able to mint what the identity provider alone should sign. A public key (tokens
    from an identity provider) also needs `JWT_AUDIENCE` and `JWT_ISSUER`, so that a token
    that provider signed for another service is not accepted here."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="JWT_")

    secret: SecretStr
    public_key: SecretStr | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_seconds: int = Field(default=0, ge=0, le=300)
    algorithms: Annotated[tuple[JwtAlgorithm, ...] | None, NoDecode] = None
    # `exp - iat` at most this: a stolen token is useful for a bounded time.
    max_lifetime_seconds: int = Field(default=MAX_TOKEN_LIFETIME_SECONDS, ge=60, le=30 * 86_400)

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

    @field_validator("algorithms", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            names = tuple(name.strip() for name in value.split(",") if name.strip())
            return names or None
        return value

    @model_validator(mode="after")
    def _identity_provider_is_pinned(self) -> JwtSettings:
        if self.public_key is not None and (self.audience is None or self.issuer is None):
            msg = (
                "JWT_PUBLIC_KEY is set: JWT_AUDIENCE and JWT_ISSUER are required too (the"
                " identity provider's tokens for this service, and only those)"
            )
            raise ValueError(msg)
        if self.algorithms is not None and len(set(self.algorithms)) != len(self.algorithms):
            msg = "JWT_ALGORITHMS names an algorithm twice"
            raise ValueError(msg)
        return self


class LogSettings(BaseSettings):
    model_config = _ENV

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: readable text when stderr is a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"


DEFAULT_CLOCK_SKEW_SECONDS = 5.0


class ClockSkewSettings(BaseSettings):
    """How far in the future an event's timestamp may be: the command API refuses later ones,
    the query API's windows include events up to that far ahead."""

    model_config = _ENV

    # At most 60: a window read then touches at most 120 bucket rows (see query_api/windows.py).
    max_clock_skew_seconds: float = Field(default=DEFAULT_CLOCK_SKEW_SECONDS, ge=0, le=60)


class CommandSettings(BaseSettings):
    model_config = _ENV

    publish_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    # A body is held whole while it is parsed. The default takes the largest valid batch; the
    # cap leaves room for whitespace and escaped strings, while one request cannot take a
    # replica's memory.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # How long a partition's record batch may fill before it goes to the producer; 0: until
    # the event loop has run what is ready (the publishes of the same turn).
    producer_linger_ms: int = Field(default=0, ge=0, le=1000)


# The windows GET /stats/stream offers: one reader each at most, whatever the clients ask.
DEFAULT_STREAM_WINDOWS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600)
MAX_STREAMED_WINDOWS = 32


class QuerySettings(BaseSettings):
    model_config = _ENV

    stats_require_auth: bool = False
    default_wait_ms: int = Field(default=2000, ge=0, le=10_000)
    # GET /stats/stream (Server-Sent Events), per process
    stream_max_hz: float = Field(default=10.0, gt=0, le=100)
    stream_max_clients: int = Field(default=1000, ge=1, le=100_000)
    stream_max_per_client: int = Field(default=10, ge=1, le=100_000)
    stream_windows: Annotated[tuple[Annotated[int, Field(ge=1, le=3600)], ...], NoDecode] = Field(
        default=DEFAULT_STREAM_WINDOWS, min_length=1, max_length=MAX_STREAMED_WINDOWS
    )
    # The streams' snapshot reads have a pool of their own: they can never take the
    # connections GET /stats and /ready read with.
    stream_pool_size: int = Field(default=2, ge=1, le=20)
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    stream_queue_size: int = Field(default=32, ge=1, le=10_000)
    stream_send_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Peers whose X-Forwarded-For names the client (the load balancer): addresses or CIDR
    # ranges, comma-separated, or `*`. Unset: nobody's, the peer is the client.
    trusted_proxies: str | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _no_proxy_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("stream_windows", mode="before")
    @classmethod
    def _windows_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
        return value


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="PROJECTOR_")

    group_id: str = "txstats-projector"
    max_batch: int = Field(default=20_000, ge=1, le=100_000)
    poll_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8002, ge=0, le=65535)
