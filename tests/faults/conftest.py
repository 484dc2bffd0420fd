"""Faults injected into real processes: each test starts its own Redis (and, when it stops it, its own PostgreSQL)
and hub processes, then kills, freezes or restarts them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from hub.settings import Settings
from hub.store.engine import build_engine
from hub.store.migrate import upgrade
from tests.cluster import HubProcess, start_hub, stop_hubs
from tests.services import PostgresCluster, RedisProcess


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    """A Redis of this test only, without persistence."""
    server = RedisProcess()
    server.start()
    yield server
    server.close()


@pytest.fixture
def aof_redis() -> Iterator[RedisProcess]:
    """A Redis of this test only, with an append-only file fsynced at every write."""
    server = RedisProcess(appendonly=True, appendfsync="always")
    server.start()
    yield server
    server.close()


@pytest.fixture
async def postgres_cluster() -> AsyncIterator[PostgresCluster]:
    """A PostgreSQL of this test only (so the test may stop it), holding a migrated database ``hub``."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        await create_database(cluster)
        yield cluster
    finally:
        cluster.close()


def database_url(cluster: PostgresCluster) -> str:
    return cluster.admin_url.rsplit("/", 1)[0] + "/hub"


async def create_database(cluster: PostgresCluster) -> str:
    """Create the database ``hub`` on a started cluster and migrate it; its URL."""
    admin = await asyncpg.connect(cluster.admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute("CREATE DATABASE hub")
    finally:
        await admin.close()
    engine = build_engine(database_url(cluster))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return database_url(cluster)


@dataclass
class Hubs:
    """Hub processes started by one test, each logging to a file of its own."""

    tmp_path: Path
    started: list[HubProcess] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    async def start(self, settings: Settings, n: int = 1, **extra: str) -> list[HubProcess]:
        paths = [self.tmp_path / f"hub-{len(self.started) + i}.log" for i in range(n)]
        hubs = list(await asyncio.gather(*(start_hub(settings, path, **extra) for path in paths)))
        for hub, path in zip(hubs, paths, strict=True):
            self.started.append(hub)
            self.logs[hub.port] = path
        return hubs

    def log(self, hub: HubProcess) -> str:
        return self.logs[hub.port].read_text(errors="replace")


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[Hubs]:
    group = Hubs(tmp_path)
    yield group
    await stop_hubs(group.started)


_VARIABLE = re.compile(r"\([^)]*\)|\d+")


def repeated_lines(log: str, level: str = "WARNING") -> dict[str, int]:
    """The log lines at ``level`` or above whose (logger, message) appears more than once, with counts; numbers and
    parenthesised details (exception texts, counts) do not make two lines different."""
    levels = ("WARNING", "ERROR", "CRITICAL") if level == "WARNING" else ("ERROR", "CRITICAL")
    counts: dict[str, int] = {}
    for line in log.splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[2] in levels:
            key = _VARIABLE.sub("", parts[3] + " " + parts[4])
            counts[key] = counts.get(key, 0) + 1
    return {key: n for key, n in counts.items() if n > 1}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``check()`` holds (polled every ``interval``); fails after ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(interval)
    return time.monotonic() - started
