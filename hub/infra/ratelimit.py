"""Fixed-window rate limits shared across processes through Redis (in-process without Redis)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from channels.bus import PREFIX
from hub.infra.outages import RedisSkip

_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int

    def headers(self, policy: str) -> dict[str, str]:
        """IETF RateLimit fields (draft 8+) and the de-facto X-RateLimit-* trio."""
        out = {
            "RateLimit-Policy": f'"{policy}";q={self.limit};w={self.window_seconds}',
            "RateLimit": f'"{policy}";r={self.remaining};t={self.reset_seconds}',
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, self.reset_seconds))
        return out


class RateLimiter:
    def __init__(self, redis: Any | None, skip: RedisSkip | None = None) -> None:
        self._redis = redis
        self._script: Any = redis.register_script(_SCRIPT) if redis is not None else None
        self._windows: dict[str, tuple[float, int]] = {}
        self._skip = skip or RedisSkip()
        """While Redis does not answer, windows are counted in this process."""
        self._last_prune = time.monotonic()

    async def hit(self, bucket: str, identity: str, *, limit: int, window_seconds: int) -> Verdict:
        """Count one request of ``identity`` against ``bucket``'s window."""
        key = f"{PREFIX}ratelimit:{bucket}:{identity}"
        if self._script is not None and self._skip.usable():
            try:
                count, ttl_ms = await asyncio.wait_for(
                    self._script(keys=[key], args=[window_seconds * 1000]), self._skip.wait_seconds
                )
            except Exception as exc:  # a Redis outage must not take the API down with it
                self._skip.failed("rate limiter", exc)
            else:
                self._skip.answered()
                return self._verdict(int(count), limit, int(ttl_ms) / 1000, window_seconds)
        return self._local(key, limit, window_seconds)

    def _local(self, key: str, limit: int, window_seconds: int) -> Verdict:
        now = time.monotonic()
        if now - self._last_prune > 60:
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            self._last_prune = now
        ends, count = self._windows.get(key, (0.0, 0))
        if ends <= now:
            ends, count = now + window_seconds, 0
        count += 1
        self._windows[key] = (ends, count)
        return self._verdict(count, limit, ends - now, window_seconds)

    @staticmethod
    def _verdict(count: int, limit: int, reset: float, window_seconds: int) -> Verdict:
        return Verdict(count <= limit, limit, max(0, limit - count), max(0, math.ceil(reset)), window_seconds)
