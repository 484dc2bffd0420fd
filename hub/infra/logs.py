"""Log hygiene: no credential is ever written to the log, and no client can make the hub log more than a bounded
number of lines a second (a flood of bad requests costs a summary line, not a disk)."""

from __future__ import annotations

import logging
import re
import time

_SECRETS = (
    re.compile(r"(?i)(better-auth\.session_token=)[^;,\s]*"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:token|ticket|password|secret|key)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,;]+"),
    re.compile(r"()eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
)


def redact(text: str) -> str:
    """``text`` with session cookies, bearer tokens, JWTs and ``token=``/``password=`` values masked."""
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Formats the message (and traceback) once, masked; the formatter then prints it as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        record.msg = redact(message)
        record.args = None
        return True


class RateLimitFilter(logging.Filter):
    """At most ``per_second`` records a second of each (logger, message template); the rest are counted and
    reported in one line when the second is over."""

    def __init__(self, per_second: int) -> None:
        super().__init__()
        self.per_second = per_second
        self._window = 0
        self._counts: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        window = int(time.monotonic())
        if window != self._window:
            dropped = {key: n - self.per_second for key, n in self._counts.items() if n > self.per_second}
            self._window = window
            self._counts = {}
            if dropped:
                total = sum(dropped.values())
                (name, template), _ = max(dropped.items(), key=lambda item: item[1])
                logging.getLogger("hub.logs").warning(
                    "%d log lines dropped in the last second (most: %s %r)", total, name, template[:80]
                )
        key = (record.name, str(record.msg))
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= self.per_second


def install(level: str, per_second: int) -> None:
    """Configure the root logger for the service: one stream handler, rate limited, credentials masked."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        # a line per Alembic plugin at every start tells an operator nothing (its migration lines still show)
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RateLimitFilter(per_second))
        handler.addFilter(RedactingFilter())
