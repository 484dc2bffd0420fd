"""AppError: the one exception code anywhere raises to report a problem (REST, socket acks, connect refusals)."""

from __future__ import annotations

from typing import Any

from channels.errors import Problem, ProblemType


class AppError(Exception):
    def __init__(
        self,
        problem: ProblemType,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or problem.title)
        self.problem = problem
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    @property
    def status(self) -> int:
        return self.problem.status

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        return Problem(self.problem, self.detail, self.extensions or None).to_dict(instance)


REDIS_NOT_SERVING = ("LOADING", "BUSY ", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "MISCONF", "NOREPLICAS", "READONLY")
"""Error replies of a Redis that is up but cannot serve now (loading its data after a restart, a script running too
long, no master, cannot persist, a replica after a failover): an outage (503), not a bug (500)."""


def unavailable_dependency(exc: BaseException) -> str | None:
    """``"redis"`` or ``"database"`` when ``exc`` (or what caused it) says that dependency did not answer in time or
    refused the connection; None for any other failure. The hub's own Redis code raises redis-py's exception
    types; a bare OSError or timeout comes from the database driver (the upstream services' errors are aiohttp's
    and handled where they are called)."""
    import redis.exceptions
    import sqlalchemy.exc

    from hub.infra.resp import ReplyError
    from hub.store.engine import DatabaseUnavailable

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return "redis"
        if isinstance(current, ReplyError | redis.exceptions.ResponseError) and str(current).startswith(
            REDIS_NOT_SERVING
        ):
            return "redis"
        if isinstance(current, DatabaseUnavailable | sqlalchemy.exc.TimeoutError | sqlalchemy.exc.InterfaceError):
            return "database"
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return "database"
        if isinstance(current, OSError | TimeoutError) or type(current).__module__.startswith("asyncpg"):
            if type(current).__module__.startswith("asyncpg") and not _is_asyncpg_connection_error(current):
                return None
            return "database"
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
    return None


def _is_asyncpg_connection_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in ("CannotConnectNowError", "ConnectionDoesNotExistError", "InterfaceError", "ConnectionFailureError")


def validation_error(errors: list[dict[str, str]], detail: str = "the request is not valid") -> AppError:
    """A 422 problem whose ``errors`` list every failure as ``{field, message, type}``."""
    return AppError(ProblemType.VALIDATION, detail, errors=errors)
