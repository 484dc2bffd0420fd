"""Shared pieces of the load scenarios: the servers under test (the hub and the two reference servers), the Node
load generator, the Redis publisher, and process CPU/memory readings.

Every server listens on loopback; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import psutil
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.services import free_port, postgres_server, redis_cluster, redis_server

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT / "loadtest" / "client" / "loadgen.js"
PEERS = Path(os.environ.get("CARTSNITCH_PEERS_DIR", ROOT / "loadtest" / ".peers"))
RESULTS = ROOT / "loadtest" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SECRET = secrets.token_urlsafe(48)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (``serve --workers`` runs its workers as children)."""
    out = [pid]
    for current in out:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                out.extend(int(child) for child in (task / "children").read_text().split())
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants so far (those alive now)."""
    total = 0.0
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(each)
    return total


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            total += rss_bytes(each)
    return total


def machine() -> str:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}"


def record(scenario: str, data: dict[str, Any]) -> None:
    """Print the scenario's JSON record and keep it under loadtest/results/ (not committed)."""
    data = {"scenario": scenario, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    print("RESULT " + json.dumps(data), flush=True)
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{scenario}.jsonl").open("a") as handle:
        handle.write(json.dumps(data) + "\n")


# --- servers under test --------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: asyncio.subprocess.Process
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self, sig: str = "term") -> None:
        if self.process.returncode is None:
            if sig == "kill":
                self.process.kill()
            else:
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def wait_http(url: str, process: asyncio.subprocess.Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"{url} exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not up after {timeout} s")


def hub_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSNITCH_")}
    env.update(
        {
            "CARTSNITCH_DATABASE_URL": database_url,
            "CARTSNITCH_REDIS_URL": redis_url,
            "CARTSNITCH_DEV_MODE": "false",
            "CARTSNITCH_JWT_SECRET_KEY": SECRET,
            "CARTSNITCH_SERVICE_KEY": secrets.token_urlsafe(32),
            "CARTSNITCH_FERNET_KEY": Fernet.generate_key().decode(),
            "CARTSNITCH_SEED_DEMO_DATA": "false",
            "CARTSNITCH_RATE_LIMIT_ENABLED": "false",
            "CARTSNITCH_LOG_LEVEL": "WARNING",
            "CARTSNITCH_HISTORY_MAX_EVENTS": "2000",
            # the load generator is one address opening thousands of sockets: the per-address abuse limits are
            # for the internet, not for this benchmark
            "CARTSNITCH_SOCKET_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
            "CARTSNITCH_SOCKET_CONNECTS_PER_SECOND": "1000000",
            "CARTSNITCH_SOCKET_CONNECT_BURST": "1000000",
            "CARTSNITCH_SOCKET_INBOUND_EVENTS_PER_SECOND": "1000000",
            "CARTSNITCH_SOCKET_INBOUND_BURST": "1000000",
        }
    )
    env.update(extra)
    return env


def hub_cli(env: dict[str, str], *args: str, timeout: float = 3600) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cartsnitch-hub {args[0]} failed: {result.stderr[-2000:]}")
    return result.stdout


async def start_hub(env: dict[str, str], port: int | None = None, workers: int = 1) -> Server:
    """A hub on loopback; ``workers`` > 1 runs ``serve --workers`` (its CPU and memory: ``tree_*`` of its pid)."""
    port = port or free_port()
    process = await asyncio.create_subprocess_exec(
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
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None,
    )
    server = Server("hub" if workers == 1 else f"hub-{workers}w", f"http://127.0.0.1:{port}", process, env)
    await wait_http(server.url + "/health", process)
    deadline = time.monotonic() + 60
    while listeners(port) < workers:  # every worker listens, not just the one that answered
        if time.monotonic() > deadline:
            raise RuntimeError(f"{listeners(port)} of {workers} workers listen after 60 s")
        await asyncio.sleep(0.1)
    return server


def listeners(port: int) -> int:
    """Sockets listening on the port (one per ``serve --workers`` worker)."""
    return sum(1 for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == psutil.CONN_LISTEN)


def peers_ready() -> bool:
    return (PEERS / "node-socketio" / "node_modules").exists() and (PEERS / "python-socketio" / ".venv").exists()


def install_peers() -> None:
    """Copy ../shared/peers (read-only) to loadtest/.peers and install their pinned dependencies."""
    source = ROOT.parent / "shared" / "peers"
    if not peers_ready():
        if not PEERS.exists():
            shutil.copytree(source, PEERS)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS / "node-socketio", check=True
        )
        subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=PEERS / "python-socketio", check=True)
        subprocess.run(
            [".venv/bin/pip", "install", "-q", "-r", "requirements.txt"], cwd=PEERS / "python-socketio", check=True
        )


async def start_peer(name: str, redis_url: str) -> Server:
    install_peers()
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "REDIS_URL": redis_url,
        "CARTSNITCH_JWT_SECRET_KEY": SECRET,
    }
    if name == "node-socketio":
        command = ["node", str(PEERS / "node-socketio" / "server.js")]
    else:
        command = [
            str(PEERS / "python-socketio" / ".venv" / "bin" / "python"),
            str(PEERS / "python-socketio" / "server.py"),
        ]
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.DEVNULL)
    server = Server(name, f"http://127.0.0.1:{port}", process)
    await wait_http(server.url + "/health", process)
    return server


def peer_version(name: str) -> str:
    with contextlib.suppress(OSError, KeyError, ValueError):
        if name == "node-socketio":
            return (
                "socket.io "
                + json.loads((PEERS / "node-socketio" / "node_modules" / "socket.io" / "package.json").read_text())[
                    "version"
                ]
            )
        return "python-socketio " + next(
            line.split("==")[1]
            for line in (PEERS / "python-socketio" / "requirements.txt").read_text().splitlines()
            if line.startswith("python-socketio==")
        )
    return "unknown"


@dataclass
class Backing:
    """PostgreSQL (for the hub) and Redis (for everyone), fresh for one run: one Redis, or a Redis Cluster of six
    nodes (three masters with a replica each, as the tests start it)."""

    database_url: str
    redis_url: str
    """what the hub is given: redis://… or redis+cluster://…"""
    redis_nodes: tuple[tuple[str, int], ...] = ()
    """every Redis process of the run (one, or the cluster's six)"""
    redis_idle: dict[str, float] = field(default_factory=dict)
    """CPU seconds per second each Redis process spends with no traffic (``measure_redis_idle``)"""

    async def measure_redis_idle(self, seconds: float = 3.0) -> None:
        """What the Redis processes spend on their own (cron, cluster gossip, idle connections), to subtract."""
        before = await self.redis_cpu()
        await asyncio.sleep(seconds)
        after = await self.redis_cpu()
        self.redis_idle = {node: (after[node] - before[node]) / seconds for node in after}

    @property
    def clustered(self) -> bool:
        return self.redis_url.startswith("redis+cluster://")

    @property
    def publish_url(self) -> str:
        """A plain URL of one node, for the platform's PUBLISH (on a cluster it reaches every node)."""
        host, port = self.redis_nodes[0]
        return f"redis://{host}:{port}/0"

    async def redis_cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) of every Redis process so far, by host:port."""
        out: dict[str, float] = {}
        for host, port in self.redis_nodes:
            client = Redis(host=host, port=port)
            try:
                info = await client.info("cpu")
            finally:
                await client.aclose()
            out[f"{host}:{port}"] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return out


REDIS_KINDS = ("single", "cluster")


@contextlib.asynccontextmanager
async def backing(redis: str = "single", *, postgres: bool = True) -> AsyncIterator[Backing]:
    """``redis``: ``single`` (one redis-server) or ``cluster`` (a Redis Cluster, sharded pub/sub). Without
    ``postgres`` the database URL is empty (for scenarios that drive Redis alone)."""
    with contextlib.ExitStack() as stack:
        if redis == "cluster":
            nodes = stack.enter_context(redis_cluster())
            redis_url, redis_nodes = nodes.url, tuple(("127.0.0.1", port) for port in nodes.ports)
        else:
            redis_url = stack.enter_context(redis_server())
            host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
            redis_nodes = ((host_port.rpartition(":")[0], int(host_port.rpartition(":")[2])),)
        if not postgres:
            yield Backing("", redis_url, redis_nodes)
            return
        admin = stack.enter_context(postgres_server())
        dsn = admin.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        await connection.execute("CREATE DATABASE loadtest")
        await connection.close()
        yield Backing(admin.rsplit("/", 1)[0] + "/loadtest", redis_url, redis_nodes)


async def seed_users(env: dict[str, str], database_url: str, count: int) -> list[tuple[str, str]]:
    """Create ``count`` users through the CLI and mint a token for each: [(user id, access token)]."""
    hub_cli(env, "migrate")
    hub_cli(
        env,
        "seed",
        "--users",
        str(count),
        "--products",
        "40",
        "--price-rows",
        "2000",
        "--purchases",
        str(max(10, count // 50)),
        "--seed",
        "7",
    )
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        ids = [row[0] for row in await connection.fetch("SELECT id FROM users ORDER BY id LIMIT $1", count)]
    finally:
        await connection.close()
    tokens: list[str] = []
    for start in range(0, len(ids), 2000):
        tokens.extend(hub_cli(env, "token", "--ttl", "86400", "--", *ids[start : start + 2000]).split())
    return list(zip(ids, tokens, strict=True))


async def priced_product(database_url: str) -> tuple[str, str]:
    """(product id, store id) of the product with the most price observations."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        row = await connection.fetchrow(
            "SELECT normalized_product_id::text, min(store_id::text) FROM price_history GROUP BY 1 "
            "ORDER BY count(*) DESC LIMIT 1"
        )
    finally:
        await connection.close()
    assert row is not None
    return row[0], row[1]


TARGETS = ("hub", "node-socketio", "python-socketio")


async def start_target(name: str, where: Backing, workers: int = 1) -> Server:
    """The hub (on the run's PostgreSQL and Redis) or one of the reference servers (on its Redis)."""
    if name == "hub":
        return await start_hub(hub_env(where.database_url, where.redis_url), workers=workers)
    return await start_peer(name, where.redis_url)


# --- the load generator ------------------------------------------------------------------------------------


class LoadGen:
    """The Node load generator process (loadtest/client/loadgen.js)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> LoadGen:
        if not (LOADGEN.parent / "node_modules" / "ws").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=LOADGEN.parent, check=True)
        process = await asyncio.create_subprocess_exec(
            "node",
            "--max-old-space-size=4096",
            str(LOADGEN),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, command: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(orjson.dumps(command) + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the load generator exited")
        reply: dict[str, Any] = json.loads(line)
        if reply.get("ev") == "error":
            raise RuntimeError(reply["message"])
        return reply

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send({"cmd": "close"}, timeout=10)
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


def user_targets(users: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"ns": f"/users/{user_id}", "auth": {"token": token}} for user_id, token in users]


# --- the publisher: the platform's plain PUBLISH, identical for every server ----------------------------------


def envelope(event_type: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "event_type": event_type,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "service": "loadtest",
            "payload": payload,
        }
    )


class Publisher:
    """PUBLISHes pre-built envelopes over a raw pipelined Redis connection: a few µs per message, so the
    publisher costs the shared CPU as little as possible (replies are counted, not parsed)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.replies = 0
        self._task = asyncio.ensure_future(self._count())

    @classmethod
    async def connect(cls, redis_url: str) -> Publisher:
        host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def _count(self) -> None:
        while True:
            data = await self.reader.read(1 << 16)
            if not data:
                return
            self.replies += data.count(b"\r\n")

    def publish(self, channel: bytes, messages: Sequence[bytes]) -> None:
        head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(channel), channel)
        self.writer.write(b"".join(head + b"$%d\r\n%s\r\n" % (len(m), m) for m in messages))

    async def settle(self, expected: int, timeout: float = 10) -> None:
        await self.writer.drain()
        deadline = time.monotonic() + timeout
        while self.replies < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()


def price_event_maker(product_id: str, store_id: str) -> Any:
    """n -> a cartsnitch.prices.updated envelope for one product carrying ``ts`` (Unix ns) now."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()).encode()
    today = time.strftime("%Y-%m-%d", time.gmtime()).encode()
    prefix = (
        b'{"event_type":"cartsnitch.prices.updated","timestamp":"' + stamp + b'","service":"loadtest",'
        b'"payload":{"product_id":"'
        + product_id.encode()
        + b'","store_id":"'
        + store_id.encode()
        + b'","store_slug":"kroger","observed_date":"'
        + today
        + b'","regular_price":'
    )

    def make(n: int) -> bytes:
        return (
            prefix
            + b"%d.%02d" % (3 + n % 3, n % 100)
            + b',"sale_price":null,"ts":'
            + str(time.time_ns()).encode()
            + b"}}"
        )

    return make


def sync_event_maker(users: Sequence[str]) -> Any:
    """n -> a cartsnitch.sync.progress envelope for users[n % len(users)] carrying ``ts`` (Unix ns) now."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()).encode()
    prefix = (
        b'{"event_type":"cartsnitch.sync.progress","timestamp":"'
        + stamp
        + b'","service":"loadtest","payload":{"user_id":"'
    )
    middle = (
        b'","store_slug":"kroger","job_id":"load","status":"running","progress":0.5,"items_synced":1,"message":"","ts":'
    )
    encoded = [u.encode() for u in users]
    count = len(encoded)

    def make(n: int) -> bytes:
        return prefix + encoded[n % count] + middle + str(time.time_ns()).encode() + b"}}"

    return make


async def publish_at(
    publisher: Publisher, rate: float, seconds: float, make: Any, *, channel: str, tick: float = 0.002
) -> int:
    """PUBLISH ``make(n)`` at ``rate`` per second for ``seconds``; returns how many were published."""
    total = int(rate * seconds)
    name = channel.encode()
    base = publisher.replies
    started = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            publisher.publish(name, [make(n) for n in range(sent, due)])
            sent = due
        await asyncio.sleep(tick)
        if time.monotonic() - started > seconds * 3 + 10:
            break  # the publisher cannot keep up; report what it managed
    await publisher.settle(base + sent)
    return sent
