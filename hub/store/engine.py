"""The async engine and sessionmaker, and the gate that stops requests queueing behind a database that does not
answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Engine, Result, Select, Table, delete, event, exc, false, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger("hub.database")
PROBE_SECONDS = 0.5
"""While the database is taken for down, how often it is probed."""

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

    ``wait_seconds`` bounds connecting, waiting for a pooled connection and the ping of a pooled connection before
    use, ``statement_seconds`` (PostgreSQL) each statement: a database that is down or frozen costs the requests it
    catches that long, then a 503 (and ``DatabaseGate`` answers the following ones at once).

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
            # SQLite's own lower() folds ASCII only: a search for "café" would not find "CAFÉ", while the needle
            # is lower-cased in Python. No SQLite index holds lower(), so replacing it changes no stored order
            dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

        return engine
    pool = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_timeout=wait_seconds,
        isolation_level="AUTOCOMMIT",
        connect_args={"timeout": wait_seconds, "command_timeout": statement_seconds},
    )

    @event.listens_for(pool.sync_engine, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # the pre-ping SQLAlchemy offers runs under the statement timeout (30 s): against a frozen server a request
        # would wait that long before even trying a fresh connection. This one waits as long as connecting may
        try:
            dbapi_connection.run_async(lambda connection: connection.fetchrow(";", timeout=wait_seconds))
        except Exception as error:
            # dropped here: SQLAlchemy would give a connection it invalidates 2 s to close politely
            with contextlib.suppress(Exception):
                dbapi_connection.driver_connection.terminate()
            raise exc.DisconnectionError("the pooled connection did not answer its ping") from error

    engine = pool.execution_options(isolation_level=TRANSACTIONS)
    _AUTOCOMMIT[engine.sync_engine] = pool
    return engine


async def locking(session: AsyncSession, query: Select[Any]) -> Result[Any]:
    """Run ``query`` holding what it reads until the transaction ends, so that two transactions that read, then
    write what they read (replace a list, insert unless one exists), run one after the other.

    PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite has no row locks, and its driver begins a transaction only at the
    first write, so a read alone holds nothing: a write that changes nothing (a ``DELETE`` of no row of the query's
    table) first takes the database's write lock, which the next writer waits for (the busy timeout)."""
    table = query.get_final_froms()[0]
    assert isinstance(table, Table)
    if not await take_sqlite_write_lock(session, table):
        query = query.with_for_update()
    result: Result[Any] = await session.execute(query)
    return result


async def serialize(session: AsyncSession, key: str, table: Table | type[Any]) -> None:
    """Until the transaction ends, no other transaction that serializes on ``key`` goes past this call: for
    check-then-insert where there is no row to lock yet (a new account's email). PostgreSQL: a transaction-level
    advisory lock on the key's hash; SQLite: the database's write lock (taken through ``table``)."""
    if not await take_sqlite_write_lock(session, table):
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def take_sqlite_write_lock(session: AsyncSession, table: Table | type[Any]) -> bool:
    """On SQLite, take the database's write lock for the rest of the transaction (True); elsewhere nothing (False).
    Its driver begins a transaction only at the first write: a write that changes nothing (a ``DELETE`` of no row)."""
    if session.get_bind().dialect.name != "sqlite":
        return False
    await session.execute(delete(table).where(false()))
    return True


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


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


class DatabaseUnavailable(Exception):
    """The database did not answer a moment ago and has not answered a probe since."""


class DatabaseGate:
    """Once a request found the database not answering, the following ones do not each wait their timeouts for it
    (a frozen server answers nothing: every request would hold a connection slot for the wait, then fail): they are
    refused at once with ``DatabaseUnavailable`` (a 503), while one probe asks the database every PROBE_SECONDS and
    opens the gate again at its first answer. ``trip()`` is for whoever sees a request fail that way (the outage
    reporting)."""

    def __init__(self, engine: AsyncEngine, timeout: float, interval: float = PROBE_SECONDS) -> None:
        self.engine = _AUTOCOMMIT.get(engine.sync_engine, engine)  # the probe needs no transaction
        self.timeout = timeout
        self.interval = interval
        self._probe: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._probe is not None

    def check(self) -> None:
        if self._probe is not None:
            raise DatabaseUnavailable("the database did not answer; it is being probed")

    def trip(self) -> None:
        """A request found the database not answering."""
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._until_answered())

    async def _until_answered(self) -> None:
        started = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(self.timeout), self.engine.connect() as connection:
                    await connection.exec_driver_sql("SELECT 1")
                break
            except Exception:  # any failure means the same: not yet
                await asyncio.sleep(self.interval)
        self._probe = None
        log.info("the database answers again (refused requests for %.1f s)", time.monotonic() - started)

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe


class Sessionmaker:
    """Sessions for units of work: ``maker.begin()`` is one transaction (every write goes through it), ``maker()``
    is a session for reads.

    On PostgreSQL a read session runs each statement on its own (autocommit): no BEGIN and ROLLBACK round trips
    around the reads. It sees what it saw in a transaction, since at READ COMMITTED each statement takes its own
    snapshot anyway."""

    def __init__(self, engine: AsyncEngine, gate: DatabaseGate | None = None) -> None:
        reads = _AUTOCOMMIT.get(engine.sync_engine, engine)
        self._transactions = async_sessionmaker(engine, expire_on_commit=False)
        self._reads = async_sessionmaker(reads, expire_on_commit=False)
        self.gate = gate

    def __call__(self) -> AsyncSession:
        if self.gate is not None:
            self.gate.check()
        return self._reads()

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]:
        if self.gate is not None:
            self.gate.check()
        return self._transactions.begin()


def build_sessionmaker(engine: AsyncEngine, gate: DatabaseGate | None = None) -> Sessionmaker:
    return Sessionmaker(engine, gate)
