"""JWT bearer authentication: a configured algorithm allow-list, `exp` and `iat` required,
a bounded lifetime, the subject checked, scopes checked.

HS256 tokens are verified with `JWT_SECRET`; RS256/ES256 tokens with `JWT_PUBLIC_KEY` when one
is configured; `JWT_ALGORITHMS` says which of them are accepted (shared/settings.py). The key is
chosen by our configuration, never by the token, so `alg: none` and HS/RS confusion (an HS256
token signed with the public key) are refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Problem
from shared.events import is_valid_producer
from shared.settings import JwtSettings

logger = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8192
MIN_RSA_KEY_BITS = 2048
SCOPE_WRITE = "transactions:write"
SCOPE_READ = "stats:read"
SCOPE_TRANSACTIONS_READ = "transactions:read"  # one's own transactions (JWT `sub` = producer)
SCOPE_TRANSACTIONS_READ_ANY = "transactions:read:any"  # anyone's


class AuthenticationError(Exception):
    """No usable credentials: 401."""


class PermissionDeniedError(Exception):
    """Valid credentials without the required scope: 403."""


UNAUTHORIZED = Problem(401, "unauthorized", "Unauthorized", {"WWW-Authenticate": "Bearer"})
FORBIDDEN = Problem(403, "forbidden", "Forbidden")
AUTH_PROBLEMS: dict[type[Exception], Problem] = {
    AuthenticationError: UNAUTHORIZED,
    PermissionDeniedError: FORBIDDEN,
}


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    scopes: frozenset[str]


def _public_key_algorithm(pem: str) -> tuple[str, Any]:
    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            msg = (
                f"JWT_PUBLIC_KEY is a {key.key_size}-bit RSA key: at least {MIN_RSA_KEY_BITS}"
                " bits are required"
            )
            raise ValueError(msg)
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            msg = f"JWT_PUBLIC_KEY is an EC key on {key.curve.name}: ES256 needs P-256"
            raise ValueError(msg)
        return "ES256", key
    msg = "JWT_PUBLIC_KEY must be an RSA or EC public key in PEM format"
    raise ValueError(msg)


def _accepted_keys(settings: JwtSettings) -> dict[str, Any]:
    """The key of each accepted algorithm; refuses an algorithm named without its key."""
    keys: dict[str, Any] = {"HS256": settings.secret.get_secret_value()}
    default = ("HS256",)
    if settings.public_key is not None:
        algorithm, keys[algorithm] = _public_key_algorithm(settings.public_key.get_secret_value())
        default = (algorithm,)
    accepted = settings.algorithms or default
    for algorithm in accepted:
        if algorithm not in keys:
            msg = f"JWT_ALGORITHMS names {algorithm}, but JWT_PUBLIC_KEY holds no key for it"
            raise ValueError(msg)
    return {algorithm: keys[algorithm] for algorithm in accepted}


class JwtVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        self._keys = _accepted_keys(settings)
        self._audience = settings.audience
        self._issuer = settings.issuer
        self._leeway = settings.leeway_seconds
        self._max_lifetime = settings.max_lifetime_seconds

    @property
    def algorithms(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationError("The bearer token is too large.")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if not isinstance(algorithm, str) or algorithm not in self._keys:
                raise AuthenticationError("The token's signing algorithm is not accepted.")
            key = self._keys[algorithm]
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iat", "sub"],
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.ExpiredSignatureError as err:
            raise AuthenticationError("The token has expired.") from err
        except jwt.MissingRequiredClaimError as err:
            raise AuthenticationError(f"The token has no {err.claim!r} claim.") from err
        except jwt.PyJWTError as err:
            logger.info("rejected a bearer token: %s", type(err).__name__)
            raise AuthenticationError("The bearer token is invalid.") from err
        # PyJWT has checked that both are numbers; a token without `iat` was refused above,
        # since its lifetime could not be bounded.
        if float(claims["exp"]) - float(claims["iat"]) > self._max_lifetime:
            raise AuthenticationError("The token's lifetime exceeds the maximum accepted.")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("The token has no subject.")
        if not is_valid_producer(subject):
            # The subject becomes the `producer` of every event it posts: one the projector
            # would refuse must not get a 201.
            raise AuthenticationError("The token's subject is not accepted.")
        return Principal(subject=subject, scopes=_scopes(claims))


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal:
        """The token's principal; raise `AuthenticationError` for a token we do not accept."""
        ...


MAX_VERIFIED_TOKENS = 1024


class VerifiedTokens:
    """A verifier that remembers the tokens its verifier accepted, by their exact string,
    until their `exp`: a producer sends the same token with every request, and verifying it
    (base64, JSON, signature) would otherwise be repeated each time. Only a token that passed
    every check is remembered, never past its `exp` (the verifier's leeway is not extended to
    remembered tokens), and at most `max_tokens` of them (the oldest is forgotten first).
    Nothing else changes: a JWT cannot be revoked before its `exp` here, cached or not."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        max_tokens: int = MAX_VERIFIED_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._max_tokens = max_tokens
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            if self._clock() < known[1]:
                return known[0]
            del self._verified[token]
        principal = self._verifier.verify(token)
        expires = _expiry(token)
        if expires is not None and self._clock() < expires:
            if len(self._verified) >= self._max_tokens:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = (principal, expires)
        return principal

    def __len__(self) -> int:
        return len(self._verified)


def _expiry(token: str) -> float | None:
    """The `exp` of a token that was just verified (so it has a numeric one), else None."""
    try:
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(expires) if isinstance(expires, int | float) else None


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(item) for item in raw)
    return frozenset()


def mint_token(
    settings: JwtSettings, *, subject: str, scopes: list[str], ttl_seconds: int = 3600
) -> str:
    """A development HS256 token from the same settings the services verify with."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "scope": " ".join(scopes), "iat": now}
    claims["exp"] = now + ttl_seconds
    if settings.audience:
        claims["aud"] = settings.audience
    if settings.issuer:
        claims["iss"] = settings.issuer
    return jwt.encode(claims, settings.secret.get_secret_value(), algorithm="HS256")


_bearer = HTTPBearer(auto_error=False, description="JWT bearer token (HS256, RS256 or ES256)")

AuthDependency = Callable[..., Coroutine[Any, Any, Principal]]


VerifierProvider = Callable[..., Awaitable[JwtVerifier]]
"""A FastAPI dependency that returns the app's verifier (each API's `deps.get_verifier`)."""


def authorize(verifier: TokenVerifier, authorization: str | None, scope: str) -> Principal:
    """The principal of an `Authorization: Bearer <token>` header value, which must hold
    `scope` (the header parsed as FastAPI's `HTTPBearer` parses it)."""
    scheme, _, token = (authorization or "").partition(" ")
    return _authorized(verifier, scheme, token, scope)


def _authorized(verifier: TokenVerifier, scheme: str, token: str, scope: str) -> Principal:
    if not token or scheme.lower() != "bearer":
        raise AuthenticationError("A bearer token is required.")
    principal = verifier.verify(token)
    if scope not in principal.scopes:
        raise PermissionDeniedError(f"The token lacks the scope {scope!r}.")
    return principal


def bearer_security_scheme() -> dict[str, Any]:
    """OpenAPI `components.securitySchemes` for routes that read the bearer token themselves
    (as `authorize` does) rather than through the `HTTPBearer` dependency: the same scheme."""
    scheme = _bearer.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {_bearer.scheme_name: scheme}


def require_scope(scope: str, *, verifier: VerifierProvider) -> AuthDependency:
    """A FastAPI dependency: the request's principal, which must hold `scope`, checked by the
    verifier that `verifier` provides."""

    async def authenticate(
        jwt_verifier: JwtVerifier = Depends(verifier),  # noqa: B008
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        if credentials is None:
            return _authorized(jwt_verifier, "", "", scope)
        return _authorized(jwt_verifier, credentials.scheme, credentials.credentials, scope)

    return authenticate
