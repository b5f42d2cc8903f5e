"""JWT attacks that tests/unit/test_auth.py does not try, on both APIs, and the logs of a whole
run of good and bad requests: neither the secret nor any token (nor its signature) is logged.

In process (ASGI), with the in-memory fakes; every log record is captured at DEBUG and also
rendered with the services' own `JsonFormatter`, which prints the records' extra fields.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from command_api.main import create_app as create_command_app
from command_api.ports import PublishFailedError
from query_api.config import QueryConfig
from query_api.main import create_app as create_query_app
from shared.auth import SCOPE_READ, SCOPE_WRITE
from shared.logs import JsonFormatter
from shared.settings import DatabaseSettings, JwtSettings, LogSettings, QuerySettings
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.doubles.memory_reader import InMemoryProjectionReader
from tests.unit import command_kit, test_auth
from tests.unit.command_kit import SECRET, body, command_config, jwt_settings
from tests.unit.test_auth import (
    AUDIENCE,
    ISSUER,
    ec_key,
    handmade,
    other_rsa_key,
    public_pem,
    rsa_key,
    with_rsa,
)

JSON = {"content-type": "application/json"}
CLIENT_LOGGERS = ("httpx", "httpcore")  # the test's own HTTP client logs its URLs


def token(**claims: Any) -> str:
    """A token for this service: our audience and issuer unless the case says otherwise, so
    that each attack is refused for what it forges, not for a missing claim."""
    return command_kit.token(**{"aud": AUDIENCE, "iss": ISSUER, **claims})


def claims(**overrides: Any) -> dict[str, Any]:
    return test_auth.claims(**{"aud": AUDIENCE, "iss": ISSUER, **overrides})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(value: str) -> list[str]:
    return value.split(".")


def tampered_payload() -> str:
    """A valid token whose payload is swapped for one with more power; signature kept."""
    header, _, signature = _segments(token(scopes=SCOPE_READ))
    forged = _b64(json.dumps(claims(scope=f"{SCOPE_WRITE} {SCOPE_READ}", sub="admin")).encode())
    return f"{header}.{forged}.{signature}"


def tampered_header() -> str:
    """alg switched to HS512 on a valid HS256 token; payload and signature kept."""
    _, payload, signature = _segments(token())
    return f"{_b64(json.dumps({'alg': 'HS512', 'typ': 'JWT'}).encode())}.{payload}.{signature}"


def signature_stripped() -> str:
    header, payload, _ = _segments(token())
    return f"{header}.{payload}."


def embedded_jwk() -> str:
    """RS256 signed by the attacker, who ships the matching public key in the `jwk` header."""
    attacker: rsa.RSAPrivateKey = other_rsa_key()
    numbers = attacker.public_key().public_numbers()

    def raw(n: int) -> str:
        return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "n": raw(numbers.n), "e": raw(numbers.e)}
    return jwt.encode(claims(), attacker, algorithm="RS256", headers={"jwk": jwk})


def remote_key_headers() -> str:
    """`jku`/`x5u` pointing at an attacker's key set: never fetched, never trusted."""
    return jwt.encode(
        claims(),
        other_rsa_key(),
        algorithm="RS256",
        headers={"jku": "https://evil.test/jwks.json", "x5u": "https://evil.test/cert.pem"},
    )


def kid_injection() -> str:
    """`kid` naming a file whose content (empty) the attacker signed with."""
    return handmade({"alg": "HS256", "typ": "JWT", "kid": "../../../../dev/null"}, claims(), b"")


def empty_hmac_key() -> str:
    return handmade({"alg": "HS256", "typ": "JWT"}, claims(), b"")


def es256_with_rsa_configured() -> str:
    return token(key=ec_key(), algorithm="ES256")


def future_iat() -> str:
    return token(iat=int(time.time()) + 3600)


def subject_not_a_string() -> str:
    return jwt.encode(claims(sub=12345), SECRET, algorithm="HS256")


def alg_none_uppercase() -> str:
    return handmade({"alg": "NONE", "typ": "JWT"}, claims(), None)


def hs256_keyed_with_the_pem_without_newlines() -> str:
    pem = public_pem(rsa_key()).replace("\n", "").encode()
    return handmade({"alg": "HS256", "typ": "JWT"}, claims(), pem)


ATTACKS = {
    "tampered payload (scope and sub raised)": tampered_payload,
    "tampered header (alg HS512)": tampered_header,
    "signature stripped": signature_stripped,
    "attacker key embedded as jwk": embedded_jwk,
    "jku/x5u to an attacker's keys": remote_key_headers,
    "kid path injection, empty key": kid_injection,
    "HS256 with an empty key": empty_hmac_key,
    "ES256 while RS256 is configured": es256_with_rsa_configured,
    "iat in the future": future_iat,
    "sub not a string": subject_not_a_string,
    "alg NONE": alg_none_uppercase,
    "HS/RS confusion, PEM without newlines": hs256_keyed_with_the_pem_without_newlines,
}


def _rsa_configured() -> JwtSettings:
    """The strongest target for forgeries: an RSA key and HS256 both accepted (named)."""
    return jwt_settings(**with_rsa(algorithms=("RS256", "HS256")))


@asynccontextmanager
async def command_client(
    jwt: JwtSettings | None = None, *, publisher: Any = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_command_app(
        command_config(jwt=jwt or _rsa_configured()),
        publisher=publisher or InMemoryEventPublisher(),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://command") as client:
        yield client


@asynccontextmanager
async def query_client(jwt: JwtSettings | None = None) -> AsyncIterator[httpx.AsyncClient]:
    reader = InMemoryProjectionReader()
    reader.record(partition=0, amount=Decimal("1.00"), event_second=1_700_000_000)
    config = QueryConfig(
        database=DatabaseSettings(),
        jwt=jwt or _rsa_configured(),
        query=QuerySettings(stats_require_auth=True, default_wait_ms=0),
        log=LogSettings(),
    )
    app = create_query_app(config, reader=reader, clock=lambda: 1_700_000_010.0)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://query") as client,
    ):
        yield client


def assert_refused(response: httpx.Response, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("attack", ATTACKS)
async def test_forged_tokens_are_refused_by_both_apis(attack: str) -> None:
    forged = ATTACKS[attack]()
    headers = {"authorization": f"Bearer {forged}", **JSON}
    async with command_client() as command, query_client() as query:
        write = await command.post("/transactions", content=body(), headers=headers)
        read = await query.get("/stats", headers=headers)
    assert_refused(write)
    assert_refused(read)
    assert forged not in write.text + read.text


async def test_a_token_outside_the_authorization_header_is_not_a_credential() -> None:
    good = token(scopes=f"{SCOPE_WRITE} {SCOPE_READ}")
    async with command_client() as command, query_client() as query:
        for name in ("access_token", "token", "jwt", "bearer"):
            assert_refused(
                await command.post(f"/transactions?{name}={good}", content=body(), headers=JSON)
            )
            assert_refused(await query.get(f"/stats?{name}={good}"))
        command.cookies.set("access_token", good)
        query.cookies.set("access_token", good)
        assert_refused(await command.post("/transactions", content=body(), headers=JSON))
        assert_refused(await query.get("/stats"))
        as_basic = {"authorization": f"Basic {good}", **JSON}
        assert_refused(await command.post("/transactions", content=body(), headers=as_basic))


async def test_only_the_first_authorization_header_counts() -> None:
    good = token()
    headers = [
        ("authorization", "Bearer forged.forged.forged"),
        ("authorization", f"Bearer {good}"),
        ("content-type", "application/json"),
    ]
    async with command_client() as command:
        assert_refused(await command.post("/transactions", content=body(), headers=headers))


async def test_read_scope_rules_on_the_query_api() -> None:
    async with query_client() as query:
        assert_refused(await query.get("/stats"))
        writer_only = {"authorization": f"Bearer {token(scopes=SCOPE_WRITE)}"}
        assert_refused(await query.get("/stats", headers=writer_only), 403)
        reader = {"authorization": f"Bearer {token(scopes=SCOPE_READ)}"}
        assert (await query.get("/stats", headers=reader)).status_code == 200


class _Broken:
    async def publish(self, events: Any) -> Any:
        raise RuntimeError("the log exploded")

    async def check_ready(self) -> None:
        return None


class _Unavailable:
    async def publish(self, events: Any) -> Any:
        raise PublishFailedError("timeout", "not confirmed")

    async def check_ready(self) -> None:
        return None


def _bad_and_good_tokens() -> list[str]:
    now = int(time.time())
    return [
        *(make() for make in ATTACKS.values()),
        handmade({"alg": "none", "typ": "JWT"}, claims(), None),
        handmade({"alg": "HS256", "typ": "JWT"}, claims(), public_pem(rsa_key()).encode()),
        token(key="another-secret-that-is-also-long-enough!!"),
        token(iat=now - 700, exp=now - 100),
        token(nbf=now + 300),
        token(aud="someone-else", iss=ISSUER),
        token(aud=AUDIENCE, iss="https://evil.test"),
        token(scopes=SCOPE_READ),
        token(padding="x" * 100_000),
        token(key=other_rsa_key(), algorithm="RS256"),
        token(),  # good
        token(key=rsa_key(), algorithm="RS256"),  # good
        token(scopes=f"{SCOPE_WRITE} {SCOPE_READ}"),  # good
    ]


async def test_neither_the_secret_nor_any_token_reaches_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = _bad_and_good_tokens()
    statuses: list[int] = []
    async with (
        command_client() as command,
        command_client(publisher=_Broken()) as broken,
        command_client(publisher=_Unavailable()) as unavailable,
        query_client() as query,
    ):
        for value in tokens:
            headers = {"authorization": f"Bearer {value}", **JSON}
            in_url = len(value) < 8000  # httpx refuses longer URLs
            for client in (command, broken, unavailable):
                answer = await client.post("/transactions", content=body(), headers=headers)
                statuses.append(answer.status_code)
                if in_url:
                    path = f"/transactions?access_token={value}"
                    answer = await client.post(path, content=b"{", headers=headers)
                    statuses.append(answer.status_code)
            statuses.append((await query.get("/stats", headers=headers)).status_code)
            if in_url:
                statuses.append((await query.get(f"/stats?access_token={value}")).status_code)
                statuses.append((await query.get(f"/x/{value}", headers=headers)).status_code)

    assert {201, 400, 401, 403, 404, 500, 503, 200} <= set(statuses)  # every path was taken
    formatter = JsonFormatter()
    ours = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    rendered = "\n".join(f"{record.getMessage()}\n{formatter.format(record)}" for record in ours)
    assert ours, "nothing was logged: the check would prove nothing"
    assert "unhandled error" in rendered  # the 500s were logged, with their tracebacks
    assert SECRET not in rendered
    for value in tokens:
        signature = value.rsplit(".", 1)[1]
        assert value not in rendered
        assert not signature or signature not in rendered
