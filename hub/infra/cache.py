"""Response cache for public and expensive reads: Redis when configured (shared by every process), in-process
otherwise. Entries live in scopes (``prices``, ``coupons``, ``products``) that events invalidate wholesale.

On Redis each scope is one hash whose ``GENERATION`` field changes with every invalidation; an entry computed by
one process is stored only if the generation it read before computing is still there, so an entry computed from
what the database held before a change is not stored after another process handled the change's event (it was,
for the cache's whole lifetime: the process that computed it only knew of its own invalidations)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.bus import PREFIX
from hub.infra.outages import RedisSkip

PRICES = "prices"
COUPONS = "coupons"
PRODUCTS = "products"
SCOPES = (PRICES, COUPONS, PRODUCTS)
_LOCAL_LIMIT = 10_000
GENERATION = "\x00generation"
"""The field of a scope's hash that names its generation (no entry key starts with a NUL)."""
_INVALIDATE = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
_STORE = """
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _scope_key(scope: str) -> str:
    return f"{PREFIX}cache:{scope}"


class Cache:
    def __init__(self, redis: Any | None, ttl_seconds: int, skip: RedisSkip | None = None) -> None:
        self._redis = redis
        self._skip = skip or RedisSkip()
        """While Redis does not answer, reads go to the database at once."""
        self._ttl = ttl_seconds
        self._local: dict[str, dict[str, tuple[float, bytes]]] = {}
        self._inflight: dict[tuple[str, str, int], asyncio.Future[bytes]] = {}
        self._generations: dict[str, int] = {}
        self._tokens: dict[str, str] = {}
        """The shared generation this process's latest invalidation of each scope set (what ``refresh`` expects)."""
        if redis is not None:
            self._invalidate_script = redis.register_script(_INVALIDATE)
            self._store_script = redis.register_script(_STORE)

    async def get_or_compute(self, scope: str, key: str, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached bytes of ``key`` in ``scope``, computing and storing them on a miss. Concurrent requests for
        one key in this process share a single lookup and, on a miss, a single computation (a thousand subscribers
        arriving at once cost one Redis read, or one query)."""
        generation = self._generations.get(scope, 0)
        flight = (scope, key, generation)
        running = self._inflight.get(flight)
        if running is not None:
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise
                # the request that was looking it up was cancelled, this one was not: it looks it up itself
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        try:
            value, shared = await self._get(scope, key)
            if value is None:
                value = await compute()
                if self._generations.get(scope, 0) == generation:  # not invalidated here while it was computed
                    await self._set(scope, key, value, shared)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: the waiters (if any) re-raise it
            raise
        else:
            future.set_result(value)
        finally:
            if self._inflight.get(flight) is future:
                del self._inflight[flight]
        return value

    async def refresh(self, scope: str, key: str, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """Compute ``key`` afresh (what is cached is not read: an event said it changed) and store the result unless
        the scope was invalidated while it was computed."""
        generation = self._generations.get(scope, 0)
        shared = self._tokens.get(scope)
        if shared is None:  # no invalidation here yet: the generation it is computed against
            _, shared = await self._get(scope, key)
        value = await compute()
        if self._generations.get(scope, 0) == generation:
            await self._set(scope, key, value, shared)
        return value

    def invalidate(self, *scopes: str) -> Awaitable[None]:
        """Forget every entry of the scopes: on this process at once (no computation under way stores its result),
        on every process (Redis) when the returned awaitable completes. A caller may compute fresh entries while
        it runs (``refresh``)."""
        for scope in scopes:
            self._local.pop(scope, None)
            self._generations[scope] = self._generations.get(scope, 0) + 1
            self._tokens[scope] = secrets.token_hex(8)
        return self._forget_shared({scope: self._tokens[scope] for scope in scopes})

    async def _forget_shared(self, tokens: dict[str, str]) -> None:
        if self._redis is not None and tokens:
            try:  # the full timeout: no stale entry
                await asyncio.gather(
                    *(
                        self._invalidate_script(keys=[_scope_key(scope)], args=[GENERATION, token, self._ttl])
                        for scope, token in tokens.items()
                    )
                )
            except Exception as exc:
                self._skip.failed("cache", exc)

    def _redis_usable(self) -> bool:
        return self._redis is not None and self._skip.usable()

    async def _get(self, scope: str, key: str) -> tuple[bytes | None, str | None]:
        """The cached value (None on a miss) and, on Redis, the scope's generation ("" for none; None when Redis did
        not answer: what is computed then is not stored)."""
        if self._redis is not None:
            if not self._redis_usable():
                return None, None
            try:
                value, generation = await asyncio.wait_for(
                    self._redis.hmget(_scope_key(scope), [key, GENERATION]), self._skip.wait_seconds
                )
            except Exception as exc:
                self._skip.failed("cache", exc)
                return None, None
            self._skip.answered()
            return (bytes(value) if value is not None else None), bytes(generation or b"").decode()
        entry = self._local.get(scope, {}).get(key)
        if entry is None or entry[0] < time.monotonic():
            return None, ""
        return entry[1], ""

    async def _set(self, scope: str, key: str, value: bytes, shared: str | None) -> None:
        """Store ``value``; on Redis only while the scope is at generation ``shared`` (no process invalidated it
        since the value's computation began)."""
        if self._redis is not None:
            if shared is None or not self._redis_usable():
                return
            try:
                await asyncio.wait_for(
                    self._store_script(keys=[_scope_key(scope)], args=[GENERATION, shared, key, value, self._ttl]),
                    self._skip.wait_seconds,
                )
            except Exception as exc:
                self._skip.failed("cache", exc)
            return
        entries = self._local.setdefault(scope, {})
        if len(entries) >= _LOCAL_LIMIT:
            entries.clear()
        entries[key] = (time.monotonic() + self._ttl, value)
