"""Stream tickets: how a browser opens the per-user SSE stream, since ``EventSource`` cannot send a header.

A signed-in client trades its credentials for a ticket (``POST /api/v1/me/events/ticket``) and opens
``…/me/events/stream?ticket=…``. A ticket is random, lives a few seconds, works once and stands for the credential
that obtained it (it opens nothing once that credential is revoked, and the stream ends when it is). It is spent
only when the stream opens: a refusal the client may retry (429, 503) leaves it usable until it expires. Only its
hash is stored: in Redis (any hub process can redeem it) or, in the embedded default, in this process."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import orjson

from channels.bus import PREFIX
from hub.realtime.identity import Principal


def _key(ticket: str) -> str:
    return PREFIX + "ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


class StreamTickets:
    def __init__(self, redis: Any | None, ttl_seconds: int) -> None:
        self._redis = redis
        self.ttl_seconds = ttl_seconds
        self._local: dict[str, tuple[float, Principal]] = {}

    async def issue(self, principal: Principal) -> str:
        ticket = secrets.token_urlsafe(32)
        expires = min(time.time() + self.ttl_seconds, principal.expires_at)
        if self._redis is not None:
            value = orjson.dumps([principal.user_id, principal.kind, principal.credential_id, principal.expires_at])
            await self._redis.set(_key(ticket), value, px=max(1, int((expires - time.time()) * 1000)))
        else:
            now = time.monotonic()
            if len(self._local) > 1000:
                self._local = {key: entry for key, entry in self._local.items() if entry[0] > now}
            self._local[_key(ticket)] = (now + (expires - time.time()), principal)
        return ticket

    async def peek(self, ticket: str) -> Principal | None:
        """The principal the ticket stands for, without spending it; None when it is unknown, spent or expired."""
        if not ticket or len(ticket) > 100:
            return None
        if self._redis is not None:
            raw = await self._redis.get(_key(ticket))
            if raw is None:
                return None
            user_id, kind, credential_id, expires_at = orjson.loads(raw)
            principal = Principal(user_id, kind, credential_id, float(expires_at))
        else:
            entry = self._local.get(_key(ticket))
            if entry is None or entry[0] <= time.monotonic():
                return None
            principal = entry[1]
        return principal if principal.expires_at > time.time() else None

    async def spend(self, ticket: str) -> bool:
        """Use the ticket up; False when another request spent it first."""
        if self._redis is not None:
            return bool(await self._redis.delete(_key(ticket)))
        return self._local.pop(_key(ticket), None) is not None
