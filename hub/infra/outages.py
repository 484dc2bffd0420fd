"""Dependency outages as the request paths see them: each is logged when it starts (and then at most once per
quiet period, with how many requests it refused), not once per request."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("hub.outages")
QUIET_SECONDS = 30.0


class Outages:
    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.quiet_seconds = quiet_seconds
        self._reported: dict[str, float] = {}
        self._refused: dict[str, int] = {}

    def report(self, dependency: str, exc: BaseException) -> None:
        """One more request refused because ``dependency`` did not answer."""
        self._refused[dependency] = self._refused.get(dependency, 0) + 1
        now = time.monotonic()
        last = self._reported.get(dependency)
        if last is None or now - last >= self.quiet_seconds:
            self._reported[dependency] = now
            refused, self._refused[dependency] = self._refused[dependency], 0
            log.warning(
                "%s unavailable (%s): requests get 503 (%d refused since the last report)",
                dependency,
                type(exc).__name__,
                refused,
            )

    def refused(self, dependency: str) -> int:
        return self._refused.get(dependency, 0)
