"""Settings refuse weak secrets without ever echoing them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import ClockSkewSettings, CommandSettings, JwtSettings, QuerySettings


def test_a_short_jwt_secret_is_refused_and_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "short-secret-123")
    with pytest.raises(ValidationError) as caught:
        JwtSettings()
    assert "at least 32 bytes" in str(caught.value)
    assert "short-secret-123" not in str(caught.value)


def test_blank_optional_jwt_settings_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    monkeypatch.setenv("JWT_AUDIENCE", "")
    monkeypatch.setenv("JWT_PUBLIC_KEY", "  ")
    settings = JwtSettings()
    assert (settings.audience, settings.public_key) == (None, None)


def test_clock_skew_is_capped_to_keep_window_reads_bounded() -> None:
    with pytest.raises(ValidationError):
        ClockSkewSettings(max_clock_skew_seconds=61)


def test_the_body_limit_is_capped_to_keep_one_request_from_taking_a_replicas_memory() -> None:
    assert CommandSettings(max_body_bytes=16 * 1024 * 1024).max_body_bytes == 16 * 1024 * 1024
    with pytest.raises(ValidationError):
        CommandSettings(max_body_bytes=16 * 1024 * 1024 + 1)


def test_stream_windows_are_read_comma_separated_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAM_WINDOWS", "60, 10,60,3600")
    assert QuerySettings().stream_windows == (10, 60, 3600)
    for bad in ("0", "3601", ",".join(str(n) for n in range(1, 34)), ""):
        monkeypatch.setenv("STREAM_WINDOWS", bad)
        with pytest.raises(ValidationError):
            QuerySettings()


def test_no_proxy_is_trusted_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert QuerySettings().trusted_proxies is None
    monkeypatch.setenv("TRUSTED_PROXIES", " ")
    assert QuerySettings().trusted_proxies is None
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")
    assert QuerySettings().trusted_proxies == "10.0.0.0/8,127.0.0.1"
