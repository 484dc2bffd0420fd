"""Who is calling: access JWTs and Better-Auth session tokens (bearer or cookie) resolved to a Principal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from channels.errors import ProblemType
from hub.errors import AppError
from hub.infra.security import InvalidToken, TokenCodec, looks_like_jwt
from hub.store import tokens, users
from hub.store.engine import Sessionmaker

SESSION_COOKIES = ("__Secure-better-auth.session_token", "better-auth.session_token")
_FAMILY_CACHE_LIMIT = 100_000
_BATCH_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    kind: Literal["jwt", "session"]
    credential_id: str
    """The refresh family (JWT) or the Better-Auth session id."""
    expires_at: float
    """When the credential stops being valid (Unix seconds)."""


def unauthorized(detail: str) -> AppError:
    return AppError(ProblemType.UNAUTHORIZED, detail, headers={"WWW-Authenticate": 'Bearer realm="cartsnitch"'})


def session_token_from_cookie_value(value: str) -> str | None:
    """Better-Auth's cookie is ``<token>.<signature>``; the token is the part before the first dot."""
    token = value.split(".", 1)[0].strip()
    return token or None


def session_token_from_cookies(cookies: Mapping[str, str]) -> str | None:
    for name in SESSION_COOKIES:
        if cookies.get(name):
            return session_token_from_cookie_value(cookies[name])
    return None


class Authenticator:
    """Resolves credentials; a family seen live is trusted for ``cache_seconds`` before it is checked again."""

    def __init__(self, codec: TokenCodec, sessionmaker: Sessionmaker, cache_seconds: float = 5.0) -> None:
        self.codec = codec
        self._sessionmaker = sessionmaker
        self._cache_seconds = cache_seconds
        self._live_families: dict[str, float] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self._flush: asyncio.Handle | None = None
        self._batches: set[asyncio.Task[None]] = set()

    async def access_token(self, token: str) -> Principal:
        try:
            claims = self.codec.decode(token, "access")
        except InvalidToken as exc:
            raise unauthorized(f"invalid access token: {exc}") from None
        family_id = claims["sid"]
        if not await self._family_live(family_id, claims["sub"]):
            raise unauthorized("this session has been signed out")
        return Principal(claims["sub"], "jwt", family_id, float(claims["exp"]))

    async def session_token(self, token: str) -> Principal:
        now = datetime.now(UTC)
        async with self._sessionmaker() as session:
            row = await users.get_live_session(session, token=token, now=now)
        if row is None:
            raise unauthorized("unknown or expired session")
        return Principal(row.user_id, "session", row.id, row.expires_at.timestamp())

    async def bearer(self, token: str) -> Principal:
        """An ``Authorization: Bearer`` value: an access JWT or a Better-Auth session token."""
        token = token.strip()
        if not token:
            raise unauthorized("empty bearer token")
        if looks_like_jwt(token):
            return await self.access_token(token)
        session_token = session_token_from_cookie_value(token)
        if session_token is None:
            raise unauthorized("empty bearer token")
        return await self.session_token(session_token)

    async def request_credentials(self, authorization: str | None, cookies: Mapping[str, str]) -> Principal | None:
        """The caller of an HTTP request or socket handshake, None when it brings no credentials."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer":
                raise unauthorized("use the Bearer scheme")
            return await self.bearer(value)
        cookie_token = session_token_from_cookies(cookies)
        if cookie_token:
            return await self.session_token(cookie_token)
        return None

    async def _family_live(self, family_id: str, user_id: str) -> bool:
        now = time.monotonic()
        if self._live_families.get(family_id, 0.0) > now:
            return True
        key = (family_id, user_id)
        waiter = self._pending.get(key)
        if waiter is None:
            waiter = self._pending[key] = asyncio.get_running_loop().create_future()
            if self._flush is None and not self._batches:
                # Checks share queries: while one runs, the next ones gather and go together when it is done, so a
                # reconnect storm costs a few queries rather than one per socket.
                self._flush = asyncio.get_running_loop().call_soon(self._start_batch)
        live = await asyncio.shield(waiter)
        if live:
            if len(self._live_families) >= _FAMILY_CACHE_LIMIT:
                self._live_families.clear()
            self._live_families[family_id] = now + self._cache_seconds
        return live

    def _start_batch(self) -> None:
        self._flush = None
        if not self._pending:
            return
        batch, self._pending = (
            dict(list(self._pending.items())[:_BATCH_LIMIT]),
            dict(list(self._pending.items())[_BATCH_LIMIT:]),
        )
        task = asyncio.ensure_future(self._check_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        if self._pending and self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._start_batch)

    async def _check_batch(self, batch: dict[tuple[str, str], asyncio.Future[bool]]) -> None:
        try:
            async with self._sessionmaker() as session:
                live = await tokens.live_families(session, families=list(batch))
        except Exception as exc:
            for waiter in batch.values():
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for key, waiter in batch.items():
            if not waiter.done():
                waiter.set_result(key in live)

    def forget(self, family_id: str | None = None) -> None:
        """Drop cached liveness (one family, or all) after a sign-out in this process."""
        if family_id is None:
            self._live_families.clear()
        else:
            self._live_families.pop(family_id, None)
