"""One settings object, read once from the environment; every problem is reported together."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from hub.infra.cluster import is_cluster_url, parse_cluster_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///cartsnitch-hub.db"
DEFAULT_CORS_ORIGINS = ("https://cartsnitch.com", "http://localhost:3000", "http://localhost:5173")
DEMO_TICKER_SECONDS = 5.0
_PLACEHOLDER_WORDS = ("change", "placeholder", "secret", "example", "your", "dev", "test", "default", "xxx")
_JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
MIN_SECRET_LENGTH = 32
SECRETS = {
    "jwt_secret_key": "CARTSNITCH_JWT_SECRET_KEY",
    "service_key": "CARTSNITCH_SERVICE_KEY",
    "fernet_key": "CARTSNITCH_FERNET_KEY",
}
"""The secrets required outside dev mode, by setting: serving uses all three, the other commands fewer."""
_RANDOM_BITS_PER_CHAR = 4.5


class SettingsError(ValueError):
    """Every missing or invalid setting, listed together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    dev_mode: bool = True
    service_key: str | None = field(default=None, repr=False)
    fernet_key: str | None = field(default=None, repr=False)
    jwt_secret_key: str = field(default="", repr=False)
    jwt_algorithm: str = "HS256"
    jwt_access_token_expire_minutes: int = 15
    jwt_refresh_token_expire_days: int = 7
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs of the proxies whose X-Forwarded-For is believed (default none: the client is the TCP peer)."""
    better_auth_secret: str | None = field(default=None, repr=False)
    """Better-Auth's secret: when set, session cookies (and session tokens sent as bearer) must carry its signature."""
    session_revalidate_seconds: int = 30
    supported_stores: tuple[str, ...] | None = None
    """Store slugs that can be connected and synced; None means every store in the database."""
    receiptwitness_url: str | None = None
    clipartist_url: str | None = None
    stickershock_url: str | None = None
    shrinkray_url: str | None = None
    upstream_timeout_seconds: float = 5.0
    rate_limit_enabled: bool = True
    rate_limit_requests: int = 60
    rate_limit_window_seconds: int = 60
    rate_limit_auth_requests: int = 5
    rate_limit_auth_window_seconds: int = 60
    host: str = "127.0.0.1"
    port: int = 8000
    history_max_events: int = 1000
    history_max_age_seconds: int = 7 * 24 * 3600
    socket_send_queue_bytes: int = 1 << 20
    socket_max_payload_bytes: int = 64 * 1024
    socket_inbound_events_per_second: float = 20.0
    socket_inbound_burst: int = 40
    socket_compression: bool = False
    socket_ping_interval_seconds: float = 25.0
    socket_ping_timeout_seconds: float = 20.0
    socket_connect_timeout_seconds: float = 45.0
    socket_max_connections_per_user: int = 20
    socket_max_connections_per_address: int = 200
    socket_connects_per_second: float = 5.0
    socket_connect_burst: int = 20
    http_header_timeout_seconds: float = 15.0
    http_body_timeout_seconds: float = 30.0
    redis_timeout_seconds: float = 2.0
    ingest_claim_seconds: float = 60.0
    """A queued event a process read and did not acknowledge for this long (it died) is taken over by another; at
    least 5 s (a process tries the events it keeps through an outage every 2 s). Below the longest expansion, two
    processes may expand the same event: each records it once all the same."""
    database_timeout_seconds: float = 5.0
    database_statement_timeout_seconds: float = 30.0
    idempotency_seconds: int = 24 * 3600
    log_lines_per_second: int = 20
    auth_expiring_notice_seconds: int = 60
    stream_ticket_seconds: int = 30
    demo_sync: bool = False
    seed_demo_data: bool = False
    demo_ticker_seconds: float = 0.0
    """Every this many seconds a simulated price change is published (0: off)."""
    cache_ttl_seconds: int = 300
    buyers_cache_seconds: int = 60
    log_level: str = "INFO"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, needs: Collection[str] = tuple(SECRETS)) -> Settings:
        """Read ``CARTSNITCH_*`` (and ``DATABASE_URL``/``REDIS_URL``); raise SettingsError listing every problem.
        ``needs``: the secrets (``SECRETS`` keys) required outside dev mode; a command that uses fewer than the
        server (publishing through Redis uses none) is not asked for the others."""
        return _read(os.environ if env is None else env, frozenset(needs))


def normalize_database_url(url: str) -> str:
    """Map ``postgres(ql)://`` URLs to the asyncpg driver and ``sqlite://`` to aiosqlite."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def is_placeholder(secret: str) -> bool:
    """True for a secret that is empty, short, repetitive, or reads like a placeholder phrase.

    A placeholder word only counts in a low-entropy secret: a random 48-byte token contains "dev" or
    "xxx" about once in 300 draws and must not be refused for it.
    """
    if len(secret) < MIN_SECRET_LENGTH or len(set(secret)) < 8:
        return True
    lowered = secret.lower()
    return any(word in lowered for word in _PLACEHOLDER_WORDS) and _bits_per_char(secret) < _RANDOM_BITS_PER_CHAR


def _bits_per_char(text: str) -> float:
    """Shannon entropy of the characters of ``text`` (English phrases ~4, random base64url >= 4.7)."""
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _parse_int(raw: str, low: int = 1, high: int = 10**9) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"must be a whole number between {low} and {high}") from None
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}")
    return value


def _number(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError("must be a number") from None


def _parse_float(raw: str) -> float:
    value = _number(raw)
    if not 0 < value < 1e9:
        raise ValueError("must be a positive number")
    return value


def _parse_seconds_at_least(raw: str, least: float) -> float:
    value = _parse_float(raw)
    if value < least:
        raise ValueError(f"must be at least {least:g} seconds")
    return value


def _parse_seconds_or_off(raw: str) -> float:
    value = _number(raw)
    if not (value == 0 or 0.1 <= value <= 86400):
        raise ValueError("must be 0 (off) or between 0.1 and 86400 seconds")
    return value


def _parse_list(raw: str, noun: str) -> tuple[str, ...]:
    """A JSON list of strings, or the same items separated by commas."""
    text = raw.strip()
    if text.startswith(("[", "{", '"')):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a JSON list of {noun} (or {noun} separated by commas)")
        return tuple(value)
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_origins(raw: str) -> tuple[str, ...]:
    """Browser origins: ``scheme://host[:port]``, http or https, nothing after the authority."""
    values = _parse_list(raw, "origins")
    for value in values:
        parts = urlsplit(value.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
            raise ValueError(f"{value!r} is not an origin (scheme://host[:port], http or https)")
    return values


def _parse_stores(raw: str) -> tuple[str, ...]:
    return _parse_list(raw, "store slugs")


def _parse_networks(raw: str) -> tuple[str, ...]:
    from hub.infra.clientaddr import parse_networks

    values = _parse_list(raw, "CIDRs")
    parse_networks(values)
    return values


def _parse_url(raw: str) -> str:
    text = raw.strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return text


def _parse_algorithm(raw: str) -> str:
    if raw not in _JWT_ALGORITHMS:
        raise ValueError(f"must be one of {', '.join(_JWT_ALGORITHMS)}")
    return raw


def _parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _text(raw: str) -> str:
    return raw


_Parser = Callable[[str], Any]

# setting -> (environment names, first found wins; parser)
_SOURCES: dict[str, tuple[tuple[str, ...], _Parser]] = {
    "database_url": (("CARTSNITCH_DATABASE_URL", "DATABASE_URL"), lambda raw: normalize_database_url(raw.strip())),
    "redis_url": (("CARTSNITCH_REDIS_URL", "REDIS_URL"), lambda raw: raw.strip() or None),
    "dev_mode": (("CARTSNITCH_DEV_MODE",), _parse_bool),
    "service_key": (("CARTSNITCH_SERVICE_KEY",), _text),
    "fernet_key": (("CARTSNITCH_FERNET_KEY",), _text),
    "jwt_secret_key": (("CARTSNITCH_JWT_SECRET_KEY",), _text),
    "jwt_algorithm": (("CARTSNITCH_JWT_ALGORITHM",), _parse_algorithm),
    "jwt_access_token_expire_minutes": (
        ("CARTSNITCH_JWT_ACCESS_TOKEN_EXPIRE_MINUTES",),
        lambda raw: _parse_int(raw, 1, 24 * 60),
    ),
    "jwt_refresh_token_expire_days": (
        ("CARTSNITCH_JWT_REFRESH_TOKEN_EXPIRE_DAYS",),
        lambda raw: _parse_int(raw, 1, 365),
    ),
    "cors_origins": (("CARTSNITCH_CORS_ORIGINS",), _parse_origins),
    "trusted_proxies": (("CARTSNITCH_TRUSTED_PROXIES",), _parse_networks),
    "better_auth_secret": (("CARTSNITCH_BETTER_AUTH_SECRET", "BETTER_AUTH_SECRET"), _text),
    "session_revalidate_seconds": (("CARTSNITCH_SESSION_REVALIDATE_SECONDS",), lambda raw: _parse_int(raw, 1, 60)),
    "supported_stores": (("CARTSNITCH_SUPPORTED_STORES",), _parse_stores),
    "receiptwitness_url": (("CARTSNITCH_RECEIPTWITNESS_URL",), _parse_url),
    "clipartist_url": (("CARTSNITCH_CLIPARTIST_URL",), _parse_url),
    "stickershock_url": (("CARTSNITCH_STICKERSHOCK_URL",), _parse_url),
    "shrinkray_url": (("CARTSNITCH_SHRINKRAY_URL",), _parse_url),
    "upstream_timeout_seconds": (("CARTSNITCH_UPSTREAM_TIMEOUT_SECONDS",), _parse_float),
    "rate_limit_enabled": (("CARTSNITCH_RATE_LIMIT_ENABLED",), _parse_bool),
    "rate_limit_requests": (("CARTSNITCH_RATE_LIMIT_REQUESTS",), _parse_int),
    "rate_limit_window_seconds": (("CARTSNITCH_RATE_LIMIT_WINDOW_SECONDS",), _parse_int),
    "rate_limit_auth_requests": (("CARTSNITCH_RATE_LIMIT_AUTH_REQUESTS",), _parse_int),
    "rate_limit_auth_window_seconds": (("CARTSNITCH_RATE_LIMIT_AUTH_WINDOW_SECONDS",), _parse_int),
    "host": (("CARTSNITCH_HOST",), _text),
    "port": (("CARTSNITCH_PORT", "PORT"), lambda raw: _parse_int(raw, 1, 65535)),
    "history_max_events": (("CARTSNITCH_HISTORY_MAX_EVENTS",), lambda raw: _parse_int(raw, 1, 1_000_000)),
    "history_max_age_seconds": (("CARTSNITCH_HISTORY_MAX_AGE_SECONDS",), _parse_int),
    "socket_send_queue_bytes": (("CARTSNITCH_SOCKET_SEND_QUEUE_BYTES",), lambda raw: _parse_int(raw, 1024)),
    "socket_max_payload_bytes": (("CARTSNITCH_SOCKET_MAX_PAYLOAD_BYTES",), lambda raw: _parse_int(raw, 256)),
    "socket_inbound_events_per_second": (("CARTSNITCH_SOCKET_INBOUND_EVENTS_PER_SECOND",), _parse_float),
    "socket_inbound_burst": (("CARTSNITCH_SOCKET_INBOUND_BURST",), _parse_int),
    "socket_compression": (("CARTSNITCH_SOCKET_COMPRESSION",), _parse_bool),
    "socket_ping_interval_seconds": (("CARTSNITCH_SOCKET_PING_INTERVAL_SECONDS",), _parse_float),
    "socket_ping_timeout_seconds": (("CARTSNITCH_SOCKET_PING_TIMEOUT_SECONDS",), _parse_float),
    "socket_connect_timeout_seconds": (("CARTSNITCH_SOCKET_CONNECT_TIMEOUT_SECONDS",), _parse_float),
    "socket_max_connections_per_user": (("CARTSNITCH_SOCKET_MAX_CONNECTIONS_PER_USER",), _parse_int),
    "socket_max_connections_per_address": (("CARTSNITCH_SOCKET_MAX_CONNECTIONS_PER_ADDRESS",), _parse_int),
    "socket_connects_per_second": (("CARTSNITCH_SOCKET_CONNECTS_PER_SECOND",), _parse_float),
    "socket_connect_burst": (("CARTSNITCH_SOCKET_CONNECT_BURST",), _parse_int),
    "http_header_timeout_seconds": (("CARTSNITCH_HTTP_HEADER_TIMEOUT_SECONDS",), _parse_float),
    "http_body_timeout_seconds": (("CARTSNITCH_HTTP_BODY_TIMEOUT_SECONDS",), _parse_float),
    "redis_timeout_seconds": (("CARTSNITCH_REDIS_TIMEOUT_SECONDS",), _parse_float),
    "ingest_claim_seconds": (("CARTSNITCH_INGEST_CLAIM_SECONDS",), lambda raw: _parse_seconds_at_least(raw, 5.0)),
    "database_timeout_seconds": (("CARTSNITCH_DATABASE_TIMEOUT_SECONDS",), _parse_float),
    "database_statement_timeout_seconds": (("CARTSNITCH_DATABASE_STATEMENT_TIMEOUT_SECONDS",), _parse_float),
    "idempotency_seconds": (("CARTSNITCH_IDEMPOTENCY_SECONDS",), _parse_int),
    "log_lines_per_second": (("CARTSNITCH_LOG_LINES_PER_SECOND",), _parse_int),
    "auth_expiring_notice_seconds": (("CARTSNITCH_AUTH_EXPIRING_NOTICE_SECONDS",), _parse_int),
    "stream_ticket_seconds": (("CARTSNITCH_STREAM_TICKET_SECONDS",), lambda raw: _parse_int(raw, 1, 300)),
    "demo_sync": (("CARTSNITCH_DEMO_SYNC",), _parse_bool),
    "seed_demo_data": (("CARTSNITCH_SEED_DEMO_DATA",), _parse_bool),
    "demo_ticker_seconds": (("CARTSNITCH_DEMO_TICKER_SECONDS",), _parse_seconds_or_off),
    "cache_ttl_seconds": (("CARTSNITCH_CACHE_TTL_SECONDS",), _parse_int),
    "buyers_cache_seconds": (("CARTSNITCH_BUYERS_CACHE_SECONDS",), _parse_int),
    "log_level": (("CARTSNITCH_LOG_LEVEL", "LOG_LEVEL"), _parse_log_level),
}


def _read(env: Mapping[str, str], needs: frozenset[str]) -> Settings:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, (env_names, parse) in _SOURCES.items():
        found = next(((key, env[key]) for key in env_names if env.get(key, "").strip() != ""), None)
        if found is None:
            continue
        key, raw = found
        try:
            values[name] = parse(raw)
        except (ValueError, json.JSONDecodeError) as exc:
            problems.append(f"{key}: {exc}")
    embedded = "database_url" not in values and "redis_url" not in values
    # Dev mode is on by default only for the embedded default (SQLite and the in-process broker): a deployment
    # that points at PostgreSQL or Redis must bring real secrets unless it opts in explicitly.
    dev_mode = values.setdefault("dev_mode", embedded)
    values.setdefault("demo_sync", dev_mode and "receiptwitness_url" not in values)
    values.setdefault("seed_demo_data", embedded)
    values.setdefault("demo_ticker_seconds", DEMO_TICKER_SECONDS if embedded and dev_mode else 0.0)
    database_url = values.get("database_url", DEFAULT_DATABASE_URL)
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        problems.append("CARTSNITCH_DATABASE_URL: must be a postgresql:// or sqlite:// URL")
    redis_url = values.get("redis_url")
    if redis_url and is_cluster_url(redis_url):
        try:
            parse_cluster_url(redis_url)
        except ValueError as exc:
            problems.append(f"CARTSNITCH_REDIS_URL: {exc}")
    elif redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(
            "CARTSNITCH_REDIS_URL: must be a redis://, rediss:// or unix:// URL, "
            "or redis+cluster://host:port,host:port/ for a Redis Cluster"
        )
    if not dev_mode:
        for name in ("jwt_secret_key", "service_key"):
            secret = values.get(name)
            if not secret and name in needs:
                problems.append(f"{SECRETS[name]}: required outside dev mode")
            elif secret and is_placeholder(secret):
                problems.append(
                    f"{SECRETS[name]}: looks like a placeholder (at least {MIN_SECRET_LENGTH} random "
                    "characters are required outside dev mode)"
                )
        if not values.get("fernet_key") and "fernet_key" in needs:
            problems.append("CARTSNITCH_FERNET_KEY: required outside dev mode")
    if values.get("demo_ticker_seconds") and not dev_mode:
        problems.append("CARTSNITCH_DEMO_TICKER_SECONDS: only in dev mode (the ticker writes simulated prices)")
    if values.get("fernet_key"):
        problems.extend(_fernet_problems(values["fernet_key"]))
    if problems:
        raise SettingsError(problems)
    return Settings(**values)


def _fernet_problems(key: str) -> list[str]:
    from cryptography.fernet import Fernet

    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        return ["CARTSNITCH_FERNET_KEY: must be a url-safe base64-encoded 32-byte key (Fernet.generate_key())"]
    return []


def setting_names() -> dict[str, tuple[str, ...]]:
    """Setting name -> the environment variables that set it (for docs and tests)."""
    return {name: names for name, (names, _) in _SOURCES.items()}
