"""Real hub processes (``cartsnitch-hub serve`` subprocesses) sharing PostgreSQL and Redis, and the clients that
follow them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import socketio

from hub.infra.security import TokenCodec, random_id
from hub.settings import Settings
from hub.store import tokens
from hub.store.engine import build_engine, build_sessionmaker
from tests import factories
from tests.services import free_port


@dataclass
class HubProcess:
    port: int
    process: asyncio.subprocess.Process
    log: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    async def metric(self, name: str, **labels: str) -> float:
        """The value of one Prometheus sample (0 when absent)."""
        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics") as response:
            text = await response.text()
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0


def hub_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARTSNITCH_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "CARTSNITCH_DATABASE_URL": settings.database_url,
            "CARTSNITCH_REDIS_URL": settings.redis_url or "",
            "CARTSNITCH_DEV_MODE": "false",
            "CARTSNITCH_JWT_SECRET_KEY": settings.jwt_secret_key,
            "CARTSNITCH_SERVICE_KEY": settings.service_key or "",
            "CARTSNITCH_FERNET_KEY": settings.fernet_key or "",
            "CARTSNITCH_SEED_DEMO_DATA": "false",
            "CARTSNITCH_RATE_LIMIT_ENABLED": "false",
            "CARTSNITCH_LOG_LEVEL": "WARNING",
            # every test client comes from 127.0.0.1: the per-address abuse limits have tests of their own
            "CARTSNITCH_SOCKET_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
            "CARTSNITCH_SOCKET_CONNECTS_PER_SECOND": "1000000",
            "CARTSNITCH_SOCKET_CONNECT_BURST": "1000000",
        }
    )
    env.update(extra)
    return env


async def start_hub(settings: Settings, log: Path | None = None, **extra: str) -> HubProcess:
    """A hub process; its log goes to ``log`` when given (read it when a test fails)."""
    port = free_port()
    sink = log.open("ab") if log is not None else None
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env=hub_env(settings, **extra),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink if sink is not None else asyncio.subprocess.PIPE,
        )
    finally:
        if sink is not None:
            sink.close()  # the child keeps its own descriptor
    hub = HubProcess(port, process)
    deadline = asyncio.get_running_loop().time() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            if process.returncode is not None:
                err = await process.stderr.read() if process.stderr else (log.read_bytes() if log else b"")
                raise AssertionError(f"hub exited: {err.decode()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(hub.url + "/ready") as response:
                    if response.status == 200:
                        return hub
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("hub did not become ready in 30 s")
            await asyncio.sleep(0.1)


async def stop_hubs(hubs: list[HubProcess]) -> None:
    for hub in hubs:
        if hub.process.returncode is None:
            hub.process.terminate()
    for hub in hubs:
        try:
            await asyncio.wait_for(hub.process.wait(), 10)
        except TimeoutError:
            hub.kill()
            await hub.process.wait()


def envelope_ids(events: list[tuple[str, Any]]) -> list[str]:
    return [envelope["id"] for name, envelope in events if name.startswith("cartsnitch.") and "id" in envelope]


@dataclass
class User:
    id: str
    token: str
    email: str

    @property
    def namespace(self) -> str:
        return f"/users/{self.id}"


async def create_users(settings: Settings, n: int) -> list[User]:
    """n users of the settings' database, each with an access token of a refresh family of its own."""
    engine = build_engine(settings.database_url)
    codec = TokenCodec(settings.jwt_secret_key, settings.jwt_algorithm, 3600, 86400)
    out = []
    try:
        async with build_sessionmaker(engine).begin() as session:
            for _ in range(n):
                user = await factories.create_user(session)
                family = random_id(16)
                await tokens.insert_family(session, family_id=family, user_id=user.id)
                out.append(User(user.id, codec.issue("access", user_id=user.id, family_id=family).token, user.email))
    finally:
        await engine.dispose()
    return out


async def users_with_tokens(settings: Settings, n: int) -> list[tuple[str, str]]:
    """(user id, access token) for n new users."""
    return [(user.id, user.token) for user in await create_users(settings, n)]


class Follower:
    """A client of one user that follows the events, and on losing its hub reconnects to another with
    last_event_id."""

    def __init__(self, user_id: str, token: str) -> None:
        self.user_id = user_id
        self.token = token
        self.events: list[tuple[str, Any]] = []
        self.client: socketio.AsyncClient | None = None
        self.lost = asyncio.Event()
        self.changed = asyncio.Event()

    @property
    def namespace(self) -> str:
        return f"/users/{self.user_id}"

    def last_id(self) -> str | None:
        ids = envelope_ids(self.events)
        return ids[-1] if ids else None

    async def connect(self, hub: HubProcess) -> None:
        client = socketio.AsyncClient(reconnection=False)

        def record(event: str, *args: Any) -> None:
            self.events.append((event, args[0] if args else None))
            self.changed.set()

        client.on("*", record, namespace=self.namespace)
        client.on("disconnect", lambda *_: self.lost.set(), namespace=self.namespace)
        auth: dict[str, Any] = {"token": self.token}
        if self.last_id():
            auth["last_event_id"] = self.last_id()
        self.lost.clear()
        await client.connect(hub.url, namespaces=[self.namespace], auth=auth, transports=["websocket"], wait_timeout=10)
        self.client = client

    async def wait_for(self, count: int, timeout: float = 30) -> None:
        async def until() -> None:
            while len(envelope_ids(self.events)) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()


def sync_payload(user_id: str, n: int) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "store_slug": "kroger",
        "job_id": f"job-{n}",
        "status": "running",
        "progress": 0.5,
        "items_synced": n,
        "message": "",
    }


async def abandoned_get(url: str, path: str, headers: dict[str, str] | None = None) -> None:
    """A GET of ``path`` whose client goes away before the answer (an aborted request, a reload, a proxy's idle
    timeout): against a real process, since aiohttp's test server cancels the handler then and ``serve`` does not."""
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode())
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    await asyncio.sleep(0.1)
