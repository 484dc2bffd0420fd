"""Abuse limits of the real-time side, kept per client identity (a user, or a client address) rather than per
connection, so that reconnecting does not reset them."""

from __future__ import annotations

import time

_PRUNE_EVERY = 10_000


class KeyedBuckets:
    """A token bucket per key: ``rate`` tokens a second up to ``burst``. Full buckets are forgotten now and then,
    so memory follows the keys active in the last ``burst / rate`` seconds."""

    __slots__ = ("_buckets", "_takes", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._takes = 0

    def take(self, key: str) -> bool:
        """Spend one token of ``key``; False when its bucket is empty."""
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        self._takes += 1
        if self._takes >= _PRUNE_EVERY:
            self._takes = 0
            refill = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}
        return allowed


class Counts:
    """How many of something each key holds (connections per user or per address), against a cap."""

    __slots__ = ("_counts", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._counts: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        count = self._counts.get(key, 0)
        if count >= self.cap:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    def __getitem__(self, key: str) -> int:
        return self._counts.get(key, 0)
