"""Response cache for public and expensive reads: Redis when configured (shared by every process), in-process
otherwise. Entries live in scopes (``prices``, ``coupons``, ``products``) that events invalidate wholesale."""

from __future__ import annotations

import asyncio
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
            value = await self._get(scope, key)
            if value is None:
                value = await compute()
                if self._generations.get(scope, 0) == generation:  # not invalidated while it was computed
                    await self._set(scope, key, value)
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
        value = await compute()
        if self._generations.get(scope, 0) == generation:
            await self._set(scope, key, value)
        return value

    def invalidate(self, *scopes: str) -> Awaitable[None]:
        """Forget every entry of the scopes: on this process at once (no computation under way stores its result),
        on every process (Redis) when the returned awaitable completes. A caller may compute fresh entries while
        it runs (``refresh``)."""
        for scope in scopes:
            self._local.pop(scope, None)
            self._generations[scope] = self._generations.get(scope, 0) + 1
        return self._forget_shared(scopes)

    async def _forget_shared(self, scopes: tuple[str, ...]) -> None:
        if self._redis is not None and scopes:
            try:
                await self._redis.delete(*(_scope_key(s) for s in scopes))  # the full timeout: no stale entry
            except Exception as exc:
                self._skip.failed("cache", exc)

    def _redis_usable(self) -> bool:
        return self._redis is not None and self._skip.usable()

    async def _get(self, scope: str, key: str) -> bytes | None:
        if self._redis is not None:
            if not self._redis_usable():
                return None
            try:
                value = await asyncio.wait_for(self._redis.hget(_scope_key(scope), key), self._skip.wait_seconds)
            except Exception as exc:
                self._skip.failed("cache", exc)
                return None
            self._skip.answered()
            return bytes(value) if value is not None else None
        entry = self._local.get(scope, {}).get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    async def _set(self, scope: str, key: str, value: bytes) -> None:
        if self._redis is not None:
            if not self._redis_usable():
                return
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.hset(_scope_key(scope), key, value)
                pipe.expire(_scope_key(scope), self._ttl)
                await asyncio.wait_for(pipe.execute(), self._skip.wait_seconds)
            except Exception as exc:
                self._skip.failed("cache", exc)
            return
        entries = self._local.setdefault(scope, {})
        if len(entries) >= _LOCAL_LIMIT:
            entries.clear()
        entries[key] = (time.monotonic() + self._ttl, value)
