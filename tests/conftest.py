"""The real app on real databases: every test that asks for ``client`` runs on SQLite with the in-process broker
and on PostgreSQL with Redis."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis as redis_sync
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from hub.app import create_app
from hub.settings import Settings, normalize_database_url
from hub.store.engine import Sessionmaker, build_engine, build_sessionmaker
from hub.store.migrate import upgrade
from tests.services import postgres_server, redis_cluster, redis_server, sync_cluster_client

TEMPLATE_DB = "hub_template"


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(autouse=True)
def _today_is_the_day_the_test_runs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test modules name the date ``TODAY``, computed when they are imported, at the start of the run: in a run that
    crosses midnight each test gets the day it runs on (six tests failed after 00:00, comparing the day the run began
    with the day the hub answered on). ``TODAY_IN_UTC`` modules test code that dates by UTC."""
    module = request.module
    if isinstance(getattr(module, "TODAY", None), date):
        utc = getattr(module, "TODAY_IN_UTC", False)
        monkeypatch.setattr(module, "TODAY", datetime.now(UTC).date() if utc else date.today())


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    given = os.environ.get("CARTSNITCH_TEST_POSTGRES_URL")
    if given:
        yield normalize_database_url(given)
        return
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> str:
    async def build() -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(pg_admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        finally:
            await admin.close()
        engine = build_engine(pg_admin_url.rsplit("/", 1)[0] + "/" + TEMPLATE_DB)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(build())
    return TEMPLATE_DB


@pytest.fixture
async def pg_url(pg_admin_url: str, pg_template: str) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for one test (a copy of the migrated template)."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(_asyncpg_dsn(pg_admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield pg_admin_url.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(_asyncpg_dsn(pg_admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "hub.db"

    async def build() -> None:
        engine = build_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite file for one test."""
    target = tmp_path / "hub.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    given = os.environ.get("CARTSNITCH_TEST_REDIS_URL")
    if given:
        yield given
        return
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """Real Redis, emptied before the test."""
    client = redis_sync.Redis.from_url(redis_server_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server_url


@pytest.fixture(scope="session")
def redis_cluster_server_url() -> Iterator[str]:
    """A Redis Cluster (three masters, three replicas): ``CARTSNITCH_TEST_REDIS_CLUSTER_URL``, or started here."""
    given = os.environ.get("CARTSNITCH_TEST_REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    with redis_cluster() as nodes:
        yield nodes.url


@pytest.fixture
def redis_cluster_url(redis_cluster_server_url: str) -> str:
    """The session's Redis Cluster, every master emptied before the test."""
    client = sync_cluster_client(redis_cluster_server_url)
    try:
        client.flushall(target_nodes=client.PRIMARIES)
    finally:
        client.close()
    return redis_cluster_server_url


def make_settings(database_url: str, redis_url: str | None = None, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "dev_mode": False,
        "jwt_secret_key": secrets.token_urlsafe(48),
        "service_key": secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
        "rate_limit_enabled": False,
        "demo_sync": False,
        "seed_demo_data": False,
        # every test client comes from 127.0.0.1: the per-address abuse limits have tests of their own
        "socket_max_connections_per_address": 1_000_000,
        "socket_connects_per_second": 1_000_000.0,
        "socket_connect_burst": 1_000_000,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(database URL, Redis URL): SQLite with the in-process broker, or PostgreSQL with Redis."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url"), None
    return request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")


@pytest.fixture
def settings(stack: tuple[str, str | None]) -> Settings:
    return make_settings(*stack)


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], app: web.Application
) -> TestClient[Any, Any]:
    return await aiohttp_client(app)


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]], app: web.Application) -> TestServer:
    """The app on a real port, for socket clients."""
    return await aiohttp_server(app)


@pytest.fixture
async def user(server: TestServer) -> Any:
    """A user of the running server's database."""
    from hub import keys
    from tests import factories

    async with server.app[keys.sessionmaker].begin() as session:
        return await factories.create_user(session)


@pytest.fixture
def sessionmaker(client: TestClient[Any, Any]) -> Sessionmaker:
    from hub import keys

    return client.app[keys.sessionmaker]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for tests that speak HTTP or the protocols by hand."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def db_sessionmaker(settings: Settings) -> AsyncIterator[Sessionmaker]:
    """A sessionmaker of the test's database, for tests that do not start the app."""
    engine = build_engine(settings.database_url)
    yield build_sessionmaker(engine)
    await engine.dispose()
