"""Newest-first keyset paging on (created_at, id), the same on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import UTCDateTime

S = TypeVar("S", bound=Select[Any])


def instant(dialect: str, column: Any) -> Any:
    """A timestamp expression that compares by value. SQLite keeps timestamps as text whose format depends on the
    writer (CURRENT_TIMESTAMP has no fraction, SQLAlchemy writes microseconds), so text order would misplace equal
    instants; julianday() compares the values."""
    return func.julianday(column) if dialect == "sqlite" else column


def newest_first(
    session: AsyncSession, stmt: S, *, created: Any, key: Any, after: tuple[datetime, uuid.UUID] | None
) -> S:
    """Order by (created, key) descending and, with ``after``, continue strictly after that position."""
    dialect = session.get_bind().dialect.name
    created_value = instant(dialect, created)
    if after is not None:
        bound = instant(dialect, literal(after[0], UTCDateTime()))
        stmt = stmt.where(tuple_(created_value, key) < tuple_(bound, literal(after[1], key.type)))
    return stmt.order_by(created_value.desc(), key.desc())
