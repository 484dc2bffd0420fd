"""Dependency outages as the request paths see them: each is logged when it starts (and then at most once per
quiet period, with how many requests it refused), not once per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("hub.outages")
QUIET_SECONDS = 30.0


class Outages:
    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.quiet_seconds = quiet_seconds
        self._reported: dict[str, float] = {}
        self._refused: dict[str, int] = {}
        self.watchers: dict[str, Callable[[], None]] = {}
        """dependency -> what to do when a request finds it not answering (the database's gate closes)."""

    def report(self, dependency: str, exc: BaseException) -> None:
        """One more request refused because ``dependency`` did not answer."""
        watcher = self.watchers.get(dependency)
        if watcher is not None:
            watcher()
        self._refused[dependency] = self._refused.get(dependency, 0) + 1
        now = time.monotonic()
        last = self._reported.get(dependency)
        if last is None or now - last >= self.quiet_seconds:
            self._reported[dependency] = now
            refused, self._refused[dependency] = self._refused[dependency], 0
            log.warning(
                "%s unavailable (%s): requests get 503, queued events wait for it (%d refused since the last report)",
                dependency,
                type(exc).__name__,
                refused,
            )

    def refused(self, dependency: str) -> int:
        return self._refused.get(dependency, 0)


SKIP_SECONDS = 1.0
"""After Redis failed to answer, the request paths that can do without it skip it this long."""


WAIT_SECONDS = 0.5


class RedisSkip:
    """Shared by the request paths that can do without Redis (the response cache reads the database, the rate
    limiter counts in-process). They wait for Redis ``wait_seconds`` at most (less than the Redis timeout: a request
    that also needs Redis for itself, a history read, must not pay two timeouts), and once Redis failed to answer,
    all of them skip it for ``seconds``. Logged when Redis starts failing and when it answers again, at most once
    per ``quiet_seconds``."""

    def __init__(
        self, seconds: float = SKIP_SECONDS, wait_seconds: float = WAIT_SECONDS, quiet_seconds: float = QUIET_SECONDS
    ) -> None:
        self.seconds = seconds
        self.wait_seconds = wait_seconds
        self.quiet_seconds = quiet_seconds
        self._until = 0.0
        self._failing = False
        self._reported = float("-inf")
        self._quiet = False

    def usable(self) -> bool:
        return time.monotonic() >= self._until

    def failed(self, what: str, exc: BaseException) -> None:
        """Redis gave no answer in time. Logged when it starts failing, at most once per quiet period: answers
        that were already on their way keep arriving after a timeout, and a Redis that flaps (or a process too busy
        to read its answers in time) would otherwise be reported at every flip."""
        now = time.monotonic()
        self._until = now + self.seconds
        if not self._failing:
            self._failing = True
            self._quiet = now - self._reported < self.quiet_seconds
            if not self._quiet:
                self._reported = now
                log.warning(
                    "the %s got no answer from Redis (%s): caches read the database, rate limits count in-process",
                    what,
                    type(exc).__name__,
                )

    def answered(self) -> None:
        if self._failing:
            self._failing = False
            if not self._quiet:
                log.info("redis answers the cache and rate limiter again")
