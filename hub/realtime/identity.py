"""Who is calling: access JWTs and Better-Auth session tokens (bearer or cookie) resolved to a Principal."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote

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
    """The token of Better-Auth's cookie value ``<token>.<signature>`` (URL-encoded), signature unchecked."""
    token = unquote(value).strip().split(".", 1)[0].strip()
    return token or None


def verified_session_token(value: str, secret: str) -> str | None:
    """The token of a signed Better-Auth value, when its signature is Better-Auth's: standard base64 of
    HMAC-SHA256(secret, token), 44 characters, after the last dot, the whole URL-encoded (better-call's
    ``signCookieValue``). None for a missing, malformed or wrong signature."""
    token, dot, signature = unquote(value).strip().rpartition(".")
    if not dot or not token or len(signature) != 44 or not signature.endswith("="):
        return None
    expected = base64.b64encode(hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()).decode()
    return token if hmac.compare_digest(expected, signature) else None


def session_cookie(cookies: Mapping[str, str]) -> str | None:
    """The raw value of the Better-Auth session cookie, when the request carries one."""
    for name in SESSION_COOKIES:
        if cookies.get(name):
            return cookies[name]
    return None


def session_token_from_cookies(cookies: Mapping[str, str]) -> str | None:
    value = session_cookie(cookies)
    return session_token_from_cookie_value(value) if value else None


class Authenticator:
    """Resolves credentials. A (family, user) pair seen live is trusted for ``cache_seconds`` before it is checked
    again; a revocation anywhere in the cluster reaches this cache through ``forget`` within a second."""

    def __init__(
        self,
        codec: TokenCodec,
        sessionmaker: Sessionmaker,
        *,
        better_auth_secret: str | None = None,
        cache_seconds: float = 5.0,
    ) -> None:
        self.codec = codec
        self._sessionmaker = sessionmaker
        self._better_auth_secret = better_auth_secret or None
        self._cache_seconds = cache_seconds
        self._live_families: dict[tuple[str, str], float] = {}
        self._revocations = 0
        """Bumped by every ``forget``: a liveness answer whose query started before it is not cached."""
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

    async def signed_session(self, value: str) -> Principal:
        """A Better-Auth session value (cookie, or a session token sent as bearer): its signature is verified when
        CARTSNITCH_BETTER_AUTH_SECRET is set, else only the token before the dot is used."""
        if self._better_auth_secret is not None:
            token = verified_session_token(value, self._better_auth_secret)
            if token is None:
                raise unauthorized("the session token's signature is missing or wrong")
        else:
            token = session_token_from_cookie_value(value)
            if token is None:
                raise unauthorized("empty session token")
        return await self.session_token(token)

    async def bearer(self, token: str) -> Principal:
        """An ``Authorization: Bearer`` value: an access JWT or a Better-Auth session token."""
        token = token.strip()
        if not token:
            raise unauthorized("empty bearer token")
        if looks_like_jwt(token):
            return await self.access_token(token)
        return await self.signed_session(token)

    async def request_credentials(self, authorization: str | None, cookies: Mapping[str, str]) -> Principal | None:
        """The caller of an HTTP request or socket handshake, None when it brings no credentials."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer":
                raise unauthorized("use the Bearer scheme")
            return await self.bearer(value)
        cookie = session_cookie(cookies)
        if cookie:
            return await self.signed_session(cookie)
        return None

    async def still_live(self, principals: Iterable[Principal]) -> set[str]:
        """The credential ids among ``principals`` that are still valid (not revoked, not deleted, not expired), in
        two queries whatever their number; for revalidating long-lived channels."""
        families = {(p.credential_id, p.user_id) for p in principals if p.kind == "jwt"}
        sessions = {p.credential_id for p in principals if p.kind == "session"}
        live: set[str] = set()
        async with self._sessionmaker() as session:
            if families:
                live.update(family for family, _user in await tokens.live_families(session, families=list(families)))
            if sessions:
                live.update(await users.live_session_ids(session, session_ids=list(sessions), now=datetime.now(UTC)))
        now = time.time()
        return {p.credential_id for p in principals if p.credential_id in live and p.expires_at > now}

    async def _family_live(self, family_id: str, user_id: str) -> bool:
        now = time.monotonic()
        key = (family_id, user_id)
        if self._live_families.get(key, 0.0) > now:
            return True
        revocations = self._revocations
        waiter = self._pending.get(key)
        if waiter is None:
            waiter = self._pending[key] = asyncio.get_running_loop().create_future()
            if self._flush is None and not self._batches:
                # Checks share queries: while one runs, the next ones gather and go together when it is done, so a
                # reconnect storm costs a few queries rather than one per socket.
                self._flush = asyncio.get_running_loop().call_soon(self._start_batch)
        live = await asyncio.shield(waiter)
        if live and revocations == self._revocations:
            if len(self._live_families) >= _FAMILY_CACHE_LIMIT:
                self._live_families.clear()
            self._live_families[key] = now + self._cache_seconds
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

    def forget(self, user_id: str, family_id: str | None = None) -> None:
        """Drop cached liveness after a revocation: one family of the user, or all of the user's."""
        self._revocations += 1
        if family_id is not None:
            self._live_families.pop((family_id, user_id), None)
        else:
            for key in [key for key in self._live_families if key[1] == user_id]:
                del self._live_families[key]
