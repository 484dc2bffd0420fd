"""Passwords (bcrypt, off the event loop) and tokens (JWT with a pinned algorithm, expiry and type)."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import bcrypt
import jwt

BCRYPT_COST = 12
MAX_PASSWORD_BYTES = 72  # bcrypt ignores (bcrypt>=5: refuses) anything longer
TokenType = Literal["access", "refresh"]


class InvalidToken(Exception):
    """A token that is malformed, tampered with, expired, of the wrong type or signed with another algorithm."""


def password_fits(password: str) -> bool:
    return len(password.encode()) <= MAX_PASSWORD_BYTES


async def hash_password(password: str) -> str:
    """bcrypt at cost 12, in a worker thread (a hash takes ~250 ms of CPU)."""
    hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt(BCRYPT_COST))
    return hashed.decode()


_dummy_hash: bytes | None = None


async def _dummy() -> bytes:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = await asyncio.to_thread(bcrypt.hashpw, secrets.token_bytes(16), bcrypt.gensalt(BCRYPT_COST))
    return _dummy_hash


async def verify_password(password: str, hashed: str | None) -> bool:
    """Check a password; with no hash (unknown user) a dummy hash is checked so both cases cost the same."""
    candidate = password.encode()[:MAX_PASSWORD_BYTES]
    target = hashed.encode() if hashed and hashed.startswith(("$2a$", "$2b$", "$2y$")) else None
    if target is None:
        await asyncio.to_thread(bcrypt.checkpw, candidate, await _dummy())
        return False
    try:
        ok = await asyncio.to_thread(bcrypt.checkpw, candidate, target)
    except ValueError:
        return False
    return ok and password_fits(password)


def constant_time_equals(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def random_id(nbytes: int = 24) -> str:
    """A URL-safe random id (32 characters for 24 bytes) that does not start with ``-`` (so a command line never
    mistakes it for an option)."""
    while (value := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return value


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: int


_VERIFIED_LIMIT = 10_000


class TokenCodec:
    """Signs and verifies the hub's JWTs; the algorithm is pinned and every claim is required.

    A token verified once is remembered until it expires: a client sends the same access token with every request,
    and checking its signature and claims again costs about 100 µs each time."""

    __slots__ = ("_access_ttl", "_algorithm", "_refresh_ttl", "_secret", "_verified")

    def __init__(self, secret: str, algorithm: str, access_ttl_seconds: int, refresh_ttl_seconds: int) -> None:
        if not secret:
            raise ValueError("a JWT secret is required")
        self._secret = secret
        self._algorithm = algorithm
        self._access_ttl = access_ttl_seconds
        self._refresh_ttl = refresh_ttl_seconds
        self._verified: dict[str, tuple[dict[str, Any], int]] = {}

    @property
    def access_ttl(self) -> int:
        return self._access_ttl

    def issue(
        self, token_type: TokenType, *, user_id: str, family_id: str, ttl_seconds: int | None = None
    ) -> IssuedToken:
        now = int(time.time())
        default_ttl = self._access_ttl if token_type == "access" else self._refresh_ttl  # noqa: S105
        ttl = default_ttl if ttl_seconds is None else ttl_seconds
        jti = random_id(16)
        claims = {"sub": user_id, "type": token_type, "sid": family_id, "iat": now, "exp": now + ttl, "jti": jti}
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=self._algorithm), jti, now + ttl)

    def decode(self, token: str, expected_type: TokenType) -> dict[str, Any]:
        """The claims of a valid token of ``expected_type``; raises InvalidToken otherwise."""
        known = self._verified.get(token)
        # expired once now >= exp, as PyJWT tests it
        if known is not None and known[0]["type"] == expected_type and time.time() < known[1]:
            return dict(known[0])
        claims = self._verify(token, expected_type)
        if len(self._verified) >= _VERIFIED_LIMIT:
            self._verified.clear()
        self._verified[token] = (claims, int(claims["exp"]))
        return dict(claims)

    def _verify(self, token: str, expected_type: TokenType) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                options={"require": ["exp", "iat", "sub", "type", "sid", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        if claims.get("type") != expected_type:
            raise InvalidToken(f"not an {expected_type} token")
        if not all(isinstance(claims.get(name), str) and claims[name] for name in ("sub", "sid", "jti")):
            raise InvalidToken("malformed claims")
        return claims


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2
