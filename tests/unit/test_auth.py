"""JWT bearer authentication: the algorithm allow-list, key choice by configuration, claims,
scopes, and what a client learns (401 vs 403, never token details)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from shared.auth import (
    SCOPE_READ,
    SCOPE_WRITE,
    AuthenticationError,
    JwtVerifier,
    mint_token,
)
from shared.settings import JwtSettings
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.unit.command_kit import JSON, SECRET, body, client_for, jwt_settings, make_app, token

AUDIENCE = "txstats-command"
ISSUER = "https://issuer.test"

# Every 401 detail the API may give: fixed texts, never the token or a library message.
KNOWN_401_DETAILS = {
    "A bearer token is required.",
    "The bearer token is too large.",
    "The token's signing algorithm is not accepted.",
    "The token has expired.",
    "The bearer token is invalid.",
    "The token has no subject.",
    "The token's subject is not accepted.",
    "The token's lifetime exceeds the maximum accepted.",
    "The token has no 'iat' claim.",
    "The token has no 'exp' claim.",
    "The token has no 'sub' claim.",
    "The token has no 'aud' claim.",
    "The token has no 'iss' claim.",
}


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand, for what PyJWT refuses to produce (alg none, PEM as HMAC key)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


DAY = 86_400  # outlives any run, wherever in it a token is used


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, Any] = {"sub": "producer-1", "scope": SCOPE_WRITE, "iat": now, "exp": now + DAY}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, SECRET, algorithm="HS256")


@dataclass(frozen=True)
class Case:
    authorization: str | None
    status: int
    settings: dict[str, Any] = field(default_factory=dict)


def with_rsa(**more: Any) -> dict[str, Any]:
    """An identity provider's RSA key, pinned to our audience and its issuer (required)."""
    return {"public_key": SecretStr(public_pem(rsa_key())), **PINNED, **more}


def with_ec(**more: Any) -> dict[str, Any]:
    return {"public_key": SecretStr(public_pem(ec_key())), **PINNED, **more}


PINNED: dict[str, Any] = {"audience": AUDIENCE, "issuer": ISSUER}


def from_provider(key: Any, algorithm: str, **more: Any) -> str:
    """A token as the identity provider signs it for us (audience and issuer included)."""
    return token(key=key, algorithm=algorithm, aud=AUDIENCE, iss=ISSUER, **more)


def cases() -> dict[str, Case]:
    now = claims()["iat"]
    return {
        "missing header": Case(None, 401),
        "basic scheme": Case("Basic dXNlcjpwYXNz", 401),
        "bearer without token": Case("Bearer ", 401),
        "malformed": Case("Bearer not-a-jwt", 401),
        "three garbage parts": Case("Bearer a.b.c", 401),
        "wrong signature": Case(
            f"Bearer {token(key='another-secret-of-at-least-32-bytes!!')}", 401
        ),
        "alg none": Case(f"Bearer {handmade({'alg': 'none', 'typ': 'JWT'}, claims(), None)}", 401),
        "alg None capitalised": Case(
            f"Bearer {handmade({'alg': 'None', 'typ': 'JWT'}, claims(), None)}", 401
        ),
        "HS/RS confusion: HS256 keyed with the RSA public key": Case(
            "Bearer "
            + handmade({"alg": "HS256", "typ": "JWT"}, claims(), public_pem(rsa_key()).encode()),
            401,
            with_rsa(),
        ),
        "HS512 is not on the list": Case(f"Bearer {token(key=SECRET * 2, algorithm='HS512')}", 401),
        "RS256 without a configured public key": Case(
            f"Bearer {token(key=rsa_key(), algorithm='RS256')}", 401
        ),
        "RS256 signed by another key": Case(
            f"Bearer {from_provider(other_rsa_key(), 'RS256')}", 401, with_rsa()
        ),
        "RS256 when the configured key is EC": Case(
            f"Bearer {token(key=rsa_key(), algorithm='RS256')}", 401, with_ec()
        ),
        "expired": Case(f"Bearer {token(iat=now - 700, exp=now - 100)}", 401),
        "not yet valid (nbf)": Case(f"Bearer {token(nbf=now + 300)}", 401),
        "no exp": Case(f"Bearer {signed(claims(exp=None))}", 401),
        "no sub": Case(f"Bearer {signed(claims(sub=None))}", 401),
        "no iat: its lifetime cannot be bounded": Case(f"Bearer {signed(claims(iat=None))}", 401),
        "lifetime a second over 24 h": Case(f"Bearer {token(lifetime=86_401)}", 401),
        "lifetime over a configured maximum": Case(
            f"Bearer {token(lifetime=3601)}", 401, {"max_lifetime_seconds": 3600}
        ),
        "sub with NUL": Case(f"Bearer {token(subject='a' + chr(0) + 'b')}", 401),
        "sub over the producer cap": Case(f"Bearer {token(subject='p' * 256)}", 401),
        "empty sub": Case(f"Bearer {token(subject='')}", 401),
        "wrong audience": Case(
            f"Bearer {token(aud='someone-else', iss=ISSUER)}",
            401,
            {"audience": AUDIENCE, "issuer": ISSUER},
        ),
        "missing audience": Case(
            f"Bearer {token(iss=ISSUER)}", 401, {"audience": AUDIENCE, "issuer": ISSUER}
        ),
        "wrong issuer": Case(
            f"Bearer {token(aud=AUDIENCE, iss='https://evil.test')}",
            401,
            {"audience": AUDIENCE, "issuer": ISSUER},
        ),
        "100 KB token": Case(f"Bearer {token(padding='x' * 100_000)}", 401),
        "missing scope": Case(f"Bearer {token(scopes=SCOPE_READ)}", 403),
        "no scope claim": Case(f"Bearer {signed(claims(scope=None))}", 403),
        "good HS256": Case(f"Bearer {token()}", 201),
        "good HS256, lower-case scheme": Case(f"bearer {token()}", 201),
        "good HS256 with aud and iss": Case(
            f"Bearer {token(aud=AUDIENCE, iss=ISSUER)}",
            201,
            {"audience": AUDIENCE, "issuer": ISSUER},
        ),
        "good scp list": Case(
            f"Bearer {signed(claims(scope=None, scp=[SCOPE_READ, SCOPE_WRITE]))}",
            201,
        ),
        "good RS256": Case(f"Bearer {from_provider(rsa_key(), 'RS256')}", 201, with_rsa()),
        "good ES256": Case(f"Bearer {from_provider(ec_key(), 'ES256')}", 201, with_ec()),
        "good HS256, lifetime exactly the maximum": Case(f"Bearer {token(lifetime=86_400)}", 201),
        "HS256 refused once a public key is configured": Case(
            f"Bearer {token(aud=AUDIENCE, iss=ISSUER)}", 401, with_rsa()
        ),
        "HS256 beside RS256 when JWT_ALGORITHMS names both": Case(
            f"Bearer {token(aud=AUDIENCE, iss=ISSUER)}",
            201,
            with_rsa(algorithms=("RS256", "HS256")),
        ),
        "RS256 refused when JWT_ALGORITHMS names only HS256": Case(
            f"Bearer {from_provider(rsa_key(), 'RS256')}", 401, with_rsa(algorithms=("HS256",))
        ),
    }


@pytest.mark.parametrize("name", list(cases()))
async def test_bearer_tokens(name: str) -> None:
    case = cases()[name]  # minted now: a long test run must not age the tokens out
    log = InMemoryEventPublisher()
    app = make_app(log, jwt=jwt_settings(**case.settings))
    headers = dict(JSON)
    if case.authorization is not None:
        headers["authorization"] = case.authorization
    async with client_for(app) as client:
        response = await client.post("/transactions", content=body(), headers=headers)

    assert response.status_code == case.status, response.text
    if case.status == 201:
        assert log.events[0].producer == "producer-1"
        return
    assert log.events == []
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    if case.status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert detail in KNOWN_401_DETAILS
    else:
        assert detail == f"The token lacks the scope {SCOPE_WRITE!r}."
    credential = (case.authorization or "").partition(" ")[2]
    if len(credential) > 8:
        assert credential not in response.text


def test_the_allow_list_is_fixed_by_configuration() -> None:
    assert JwtVerifier(jwt_settings()).algorithms == ["HS256"]
    assert JwtVerifier(jwt_settings(**with_rsa())).algorithms == ["RS256"]
    assert JwtVerifier(jwt_settings(**with_ec())).algorithms == ["ES256"]
    both = with_rsa(algorithms=("RS256", "HS256"))
    assert JwtVerifier(jwt_settings(**both)).algorithms == ["HS256", "RS256"]


def test_jwt_algorithms_is_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("JWT_ALGORITHMS", " RS256, HS256 ")
    assert JwtSettings().algorithms == ("RS256", "HS256")
    monkeypatch.setenv("JWT_ALGORITHMS", "RS256,HS512")
    with pytest.raises(ValidationError, match="algorithms"):
        JwtSettings()


def test_an_algorithm_named_without_its_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="JWT_ALGORITHMS names RS256"):
        JwtVerifier(jwt_settings(algorithms=("RS256",)))
    with pytest.raises(ValueError, match="JWT_ALGORITHMS names ES256"):
        JwtVerifier(jwt_settings(**with_rsa(algorithms=("ES256",))))


def test_a_public_key_needs_audience_and_issuer() -> None:
    key = SecretStr(public_pem(rsa_key()))
    for missing in ("audience", "issuer"):
        pinned = {name: value for name, value in PINNED.items() if name != missing}
        with pytest.raises(ValidationError, match="JWT_AUDIENCE and JWT_ISSUER are required"):
            jwt_settings(public_key=key, **pinned)


def test_an_rsa_key_under_2048_bits_is_refused_at_start() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    with pytest.raises(ValueError, match="1024-bit RSA key: at least 2048"):
        JwtVerifier(jwt_settings(public_key=SecretStr(public_pem(weak)), **PINNED))


def test_an_ec_key_off_p256_is_refused_at_start() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="ES256 needs P-256"):
        JwtVerifier(jwt_settings(public_key=SecretStr(public_pem(p384)), **PINNED))


@pytest.mark.parametrize(
    "subject",
    [
        "a\x00b",
        "line\nbreak",
        "tab\there",
        "del\x7f",
        "c1\x85control",
        "lone\ud800surrogate",
        "p" * 256,
    ],
)
def test_a_subject_the_event_log_would_refuse_is_401(subject: str) -> None:
    with pytest.raises(AuthenticationError, match="subject is not accepted"):
        JwtVerifier(jwt_settings()).verify(token(subject=subject))


@pytest.mark.parametrize("subject", ["p" * 255, "producer-é-名前", "svc:orders@eu 1"])
def test_subjects_within_the_producer_rule_are_accepted(subject: str) -> None:
    assert JwtVerifier(jwt_settings()).verify(token(subject=subject)).subject == subject


def test_a_short_secret_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        jwt_settings(secret=SecretStr("too-short"))


def test_a_blank_public_key_means_none() -> None:
    assert jwt_settings(public_key=SecretStr("  \n")).public_key is None


def test_a_public_key_that_is_not_rsa_or_ec_is_refused() -> None:
    with pytest.raises(ValueError, match="PEM"):
        JwtVerifier(
            jwt_settings(public_key=SecretStr("-----BEGIN PUBLIC KEY-----\nxx\n"), **PINNED)
        )


def test_the_verifier_returns_subject_and_scopes() -> None:
    principal = JwtVerifier(jwt_settings()).verify(token(scopes=f"{SCOPE_WRITE} {SCOPE_READ}"))
    assert principal.subject == "producer-1"
    assert principal.scopes == {SCOPE_WRITE, SCOPE_READ}


def test_the_expired_message_is_specific_but_clean() -> None:
    now = claims()["iat"]
    with pytest.raises(AuthenticationError, match="expired"):
        JwtVerifier(jwt_settings()).verify(token(iat=now - 100, exp=now - 1))


def test_dev_tokens_verify_with_the_same_settings() -> None:
    settings = jwt_settings(audience=AUDIENCE, issuer=ISSUER)
    minted = mint_token(settings, subject="dev", scopes=[SCOPE_WRITE])
    principal = JwtVerifier(settings).verify(minted)
    assert principal.subject == "dev"
    assert SCOPE_WRITE in principal.scopes
