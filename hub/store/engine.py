"""The async engine and sessionmaker."""

from __future__ import annotations

import os
import weakref
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

TRANSACTIONS = "READ COMMITTED"
"""PostgreSQL's default: the level every transaction of the hub runs at."""
_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, AsyncEngine] = weakref.WeakKeyDictionary()
"""The autocommit pool under each transactional engine build_engine made (a view of that view could not undo its
isolation level)."""


def build_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    wait_seconds: float = 30.0,
    statement_seconds: float | None = None,
) -> AsyncEngine:
    """An engine for ``database_url``; SQLite gets WAL, foreign keys and a busy timeout.

    ``wait_seconds`` bounds connecting and waiting for a pooled connection, ``statement_seconds`` (PostgreSQL) each
    statement: a database that is down or frozen costs a request that long, then a 503.

    On PostgreSQL the pooled connections rest in autocommit, so the pre-ping on checkout is a single ``;`` (in a
    transaction the driver spends BEGIN, ``;`` and ROLLBACK on it); the engine returned runs transactions as
    usual, at READ COMMITTED. ``Sessionmaker`` reads straight from the autocommit connections."""
    if database_url.startswith("sqlite"):
        _create_private(database_url)
        engine = create_async_engine(database_url, connect_args={"timeout": wait_seconds})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    pool = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=wait_seconds,
        isolation_level="AUTOCOMMIT",
        connect_args={"timeout": wait_seconds, "command_timeout": statement_seconds},
    )
    engine = pool.execution_options(isolation_level=TRANSACTIONS)
    _AUTOCOMMIT[engine.sync_engine] = pool
    return engine


def _create_private(database_url: str) -> None:
    """Create the SQLite file readable by its owner only (it holds password hashes and session tokens); SQLite
    gives its -wal and -shm files the same mode."""
    path = database_url.split("///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:" or os.path.exists(path):
        return
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class Sessionmaker:
    """Sessions for units of work: ``maker.begin()`` is one transaction (every write goes through it), ``maker()``
    is a session for reads.

    On PostgreSQL a read session runs each statement on its own (autocommit): no BEGIN and ROLLBACK round trips
    around the reads. It sees what it saw in a transaction, since at READ COMMITTED each statement takes its own
    snapshot anyway."""

    def __init__(self, engine: AsyncEngine) -> None:
        reads = _AUTOCOMMIT.get(engine.sync_engine, engine)
        self._transactions = async_sessionmaker(engine, expire_on_commit=False)
        self._reads = async_sessionmaker(reads, expire_on_commit=False)

    def __call__(self) -> AsyncSession:
        return self._reads()

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self._transactions.begin()


def build_sessionmaker(engine: AsyncEngine) -> Sessionmaker:
    return Sessionmaker(engine)
