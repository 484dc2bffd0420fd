"""``cartsnitch-hub serve --workers N``: worker processes sharing one port, forming one hub through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import socketio

from hub.infra.security import TokenCodec, random_id
from hub.settings import Settings
from hub.store import tokens
from hub.store.engine import build_engine, build_sessionmaker
from tests import factories
from tests.cluster import hub_env
from tests.conftest import make_settings
from tests.services import free_port

pytestmark = [pytest.mark.slow]


@dataclass
class Group:
    """A ``serve --workers`` parent process and the port its workers share."""

    process: asyncio.subprocess.Process
    port: int
    log: Path
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[psutil.Process]:
        """The worker processes: the parent's children that listen on the port (not multiprocessing's tracker)."""
        out = []
        for child in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if any(c.laddr.port == self.port and c.status == psutil.CONN_LISTEN for c in child.net_connections()):
                    out.append(child)
        return out


def established_on(worker: psutil.Process, port: int) -> int:
    return sum(1 for c in worker.net_connections("tcp") if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def serve(settings: Settings, log: Path, workers: int, port: int | None = None) -> asyncio.subprocess.Process:
    port = port or free_port()
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            env=hub_env(settings),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )


async def _ready(group: Group, workers: int) -> None:
    """Every worker listens and the port answers /ready (bounded: 60 s)."""
    deadline = asyncio.get_running_loop().time() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            assert group.process.returncode is None, group.log.read_text()[-3000:]
            if len(group.workers()) == workers:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(group.url + "/ready") as response:
                        if response.status == 200:
                            return
            assert asyncio.get_running_loop().time() < deadline, "workers not ready in 60 s\n" + group.log.read_text()
            await asyncio.sleep(0.2)


@pytest.fixture
async def group(pg_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Group]:
    settings = make_settings(pg_url, redis_url)
    port = free_port()
    log = tmp_path / "hub.log"
    started = Group(await serve(settings, log, 2, port), port, log, settings)
    try:
        await _ready(started, 2)
        yield started
    finally:
        if started.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                started.process.kill()
            await started.process.wait()


async def _user_token(settings: Settings) -> tuple[str, str]:
    engine = build_engine(settings.database_url)
    try:
        async with build_sessionmaker(engine).begin() as session:
            user = await factories.create_user(session)
            family = random_id(16)
            await tokens.insert_family(session, family_id=family, user_id=user.id)
    finally:
        await engine.dispose()
    codec = TokenCodec(settings.jwt_secret_key, settings.jwt_algorithm, 3600, 86400)
    return user.id, codec.issue("access", user_id=user.id, family_id=family).token


class Listener:
    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self.changed = asyncio.Event()

    async def connect(self, url: str, user_id: str, token: str) -> None:
        namespace = f"/users/{user_id}"

        def record(event: str, *args: Any) -> None:
            if event.startswith("cartsnitch.") and args and "id" in args[0]:
                self.events.append(args[0])
                self.changed.set()

        self.client.on("*", record, namespace=namespace)
        self.client.on("disconnect", lambda *_: self.disconnected.set(), namespace=namespace)
        await self.client.connect(url, namespaces=[namespace], auth={"token": token}, transports=["websocket"])


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_workers_share_the_port_and_form_one_hub(group: Group) -> None:
    settings = group.settings
    workers = group.workers()
    assert len({w.pid for w in workers}) == 2
    user_id, token = await _user_token(settings)
    listeners: list[Listener] = []
    try:
        # the kernel spreads connections by their address hash: connect until both workers hold some (bounded)
        for _ in range(24):
            listener = Listener()
            await listener.connect(group.url, user_id, token)
            listeners.append(listener)
            counts = [established_on(w, group.port) for w in workers]
            if len(listeners) >= 4 and all(counts):
                break
        assert all(established_on(w, group.port) for w in workers), "one worker got every connection"

        # published through whichever worker takes the request; it reaches the sockets held by the other one too
        payload = {"user_id": user_id, "store_slug": "kroger", "job_id": "j1", "status": "running"}
        ids = []
        for n in range(3):
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    group.url + "/internal/events",
                    json={"event_type": "cartsnitch.sync.progress", "payload": {**payload, "job_id": f"j{n}"}},
                    headers={"X-Service-Key": settings.service_key or ""},
                ) as response,
            ):
                assert response.status == 202
                ids.append((await response.json())["id"])

        async def received_all(listener: Listener) -> None:
            while [e["id"] for e in listener.events] != ids:
                assert len(listener.events) <= len(ids), listener.events
                listener.changed.clear()
                await listener.changed.wait()

        await asyncio.wait_for(asyncio.gather(*(received_all(x) for x in listeners)), 15)

        group.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(group.process.wait(), 30) == 0
        for worker in workers:
            assert not worker.is_running()
        await asyncio.wait_for(asyncio.gather(*(x.disconnected.wait() for x in listeners)), 10)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", group.port), timeout=1):
            pass
    finally:
        for listener in listeners:
            with contextlib.suppress(Exception):
                await listener.client.disconnect()


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_worker_that_dies_stops_the_others_and_the_parent_fails(group: Group) -> None:
    first, second = group.workers()
    first.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(group.process.wait(), 30) != 0
    assert not second.is_running()
    assert "ended with exit code -9" in group.log.read_text()


@pytest.mark.postgres
@pytest.mark.redis
async def test_workers_stop_when_the_parent_is_killed(group: Group) -> None:
    workers = group.workers()
    group.process.kill()
    await group.process.wait()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == []


@pytest.mark.redis
async def test_serve_refuses_a_port_that_is_already_taken(sqlite_url: str, redis_url: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        log = tmp_path / "hub.log"
        process = await serve(make_settings(sqlite_url, redis_url), log, 2, port)
        assert await asyncio.wait_for(process.wait(), 60) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in log.read_text()


async def test_serve_refuses_several_workers_without_redis(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "hub.log"
    process = await serve(make_settings(sqlite_url), log, 2, port)
    assert await asyncio.wait_for(process.wait(), 60) == 2
    assert "--workers 2 needs Redis" in log.read_text()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
