"""`VerifiedTokens`: the command API remembers the tokens it verified, by their exact string,
until their `exp`: never a token that failed a check, never past `exp`, never more than its
bound. (JWTs are not revocable here, remembered or not.)"""

from __future__ import annotations

from dataclasses import dataclass, field

import jwt
import pytest

from shared.auth import AuthenticationError, JwtVerifier, Principal, VerifiedTokens
from tests.unit.command_kit import jwt_settings, token


@dataclass
class Counting:
    """The real verifier, counting the tokens it is asked to verify."""

    inner: JwtVerifier = field(default_factory=lambda: JwtVerifier(jwt_settings(leeway_seconds=30)))
    calls: list[str] = field(default_factory=list)

    def verify(self, value: str) -> Principal:
        self.calls.append(value)
        return self.inner.verify(value)


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_verified_once_until_its_exp() -> None:
    verifier, clock = Counting(), Clock(0)
    value = token(lifetime=600)
    clock.now = _claim(value, "exp") - 1
    tokens = VerifiedTokens(verifier, clock=clock)
    first, second = tokens.verify(value), tokens.verify(value)
    assert first == second
    assert first.subject == "producer-1"
    assert verifier.calls == [value]


def test_a_remembered_token_is_verified_again_at_its_exp() -> None:
    verifier, clock = Counting(), Clock(0)
    value = token(lifetime=600)
    clock.now = _claim(value, "exp") - 1
    tokens = VerifiedTokens(verifier, clock=clock)
    tokens.verify(value)
    clock.now += 1  # exp: within the verifier's leeway, so still accepted, but not remembered
    tokens.verify(value)
    tokens.verify(value)
    assert verifier.calls == [value] * 3
    assert len(tokens) == 0


def test_a_refused_token_is_never_remembered() -> None:
    verifier = Counting()
    tokens = VerifiedTokens(verifier)
    forged = token(key="another-secret-that-is-long-enough-0123456789")
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            tokens.verify(forged)
    assert verifier.calls == [forged, forged]
    assert len(tokens) == 0


def test_an_expired_token_is_refused_not_remembered() -> None:
    verifier = Counting()
    verifier.inner = JwtVerifier(jwt_settings())
    tokens = VerifiedTokens(verifier)
    expired = token(lifetime=-10)
    with pytest.raises(AuthenticationError, match="expired"):
        tokens.verify(expired)
    assert len(tokens) == 0


def test_at_most_max_tokens_are_remembered_the_oldest_goes_first() -> None:
    verifier = Counting()
    tokens = VerifiedTokens(verifier, max_tokens=2)
    a, b, c = (token(subject=name) for name in "abc")
    for value in (a, b, c, c, b, a):
        tokens.verify(value)
    assert len(tokens) == 2
    assert verifier.calls == [a, b, c, a]  # a was forgotten when c came


def _claim(value: str, name: str) -> float:
    return float(jwt.decode(value, options={"verify_signature": False})[name])
