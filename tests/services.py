"""Real PostgreSQL and Redis for the suite: given by the environment (CI), or started here on loopback."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_sync
from redis.cluster import ClusterNode

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14", "13")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(what: str) -> None:
    """Skip on a laptop without the service; under CI=true a missing service fails the run instead."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true", pytrace=False)
    pytest.skip(f"{what} is not available here")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return None


def _as_unprivileged() -> list[str]:
    """initdb refuses to run as root: run the server as the postgres (or nobody) user then."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    return []


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL of a throwaway PostgreSQL cluster (postgresql+asyncpg://…/postgres)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster.admin_url
    finally:
        cluster.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    server = RedisProcess()
    try:
        server.start()
        yield server.url
    finally:
        server.close()


def _redis_answers(port: int, loading: bool = False) -> bool:
    """True when the Redis on ``port`` answers PING with PONG (or, with ``loading``, with LOADING: it is up but still
    reading its data); not silence."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-LOADING") if loading else b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """A redis-server on a fixed loopback port that a test can kill, freeze and restart, with or without an
    append-only file (its data directory survives restarts, so AOF restarts find their data)."""

    def __init__(self, *, appendonly: bool = False, appendfsync: str = "everysec") -> None:
        binary = shutil.which("redis-server")
        if not binary:
            unavailable("Redis (redis-server)")
        assert binary
        self.binary = binary
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="hub-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, *, key_load_delay_us: int = 0) -> None:
        """``key_load_delay_us``: Redis's debug setting that slows loading the data by that much per key (it answers
        LOADING meanwhile); start() then returns as soon as Redis answers at all."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        command += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            command += ["--appendfsync", self.appendfsync]
        if key_load_delay_us:
            # and answers clients while it loads (by default only every 2 MB read)
            command += ["--key-load-delay", str(key_load_delay_us), "--loading-process-events-interval-bytes", "1024"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _redis_answers(self.port, loading=bool(key_load_delay_us)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not start")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: Redis writes its AOF (when on) and exits; SIGKILL: a crash (AOF everysec may lose ~1 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a frozen Redis cannot act on SIGTERM
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self, sig: int = signal.SIGKILL, down_seconds: float = 0.0) -> None:
        self.stop(sig)
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a fixed loopback port that a test can stop and start again."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            unavailable("PostgreSQL (initdb/pg_ctl)")
        assert initdb and pg_ctl
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="hub-pg-"))
        self.data = self.root / "data"
        self.prefix = _as_unprivileged()
        if self.prefix:
            shutil.chown(self.root, user=self.prefix[2])
            os.chmod(self.root, 0o700)
        self.port = free_port()
        subprocess.run(
            [
                *self.prefix,
                initdb,
                "-D",
                str(self.data),
                "-U",
                "hub",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://hub@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_wal_size=256MB -c max_connections=300"
        )
        log = str(self.root / "log")
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start"],
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: connections are ended and the server exits; ``immediate``: as a crash."""
        command = [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"]
        subprocess.run(command, capture_output=True, check=False)

    def freeze(self) -> None:
        """Stop the server and its backends (SIGSTOP): connections stay open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        main = int(pid_file.read_text().split()[0])
        ps = ["ps", "-o", "pid=", "--ppid", str(main)]
        children = subprocess.run(ps, capture_output=True, text=True, check=False)
        for pid in (main, *map(int, children.stdout.split())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def close(self) -> None:
        self.thaw()
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


CLUSTER_NODES = 6
CREATE_OPTIONS = ("--cluster-replicas", "1", "--cluster-yes")
CLUSTER_NODE_TIMEOUT_MS = 1000
"""How long a master may be unreachable before its replica takes over (short: the tests kill one)."""


@dataclass
class ClusterNodes:
    """Six redis-server processes in cluster mode (three masters, three replicas) on loopback."""

    ports: dict[int, int]
    """client port -> cluster bus port"""
    processes: dict[int, subprocess.Popen[bytes]]
    directory: Path

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports) + "/"

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: nothing is flushed; its replica takes over after the node timeout)."""
        process = self.processes.pop(port)
        process.kill()
        process.wait(10)

    def restart(self, port: int) -> None:
        """Start a killed node again from its node file: it rejoins, as a replica of whoever took its slots."""
        self.processes[port] = _cluster_node(port, self.ports[port], self.directory)
        _wait_port(port)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes.clear()


def _cluster_node(port: int, bus_port: int, directory: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "redis-server"
    return subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-port", str(bus_port),
            "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
            "--cluster-require-full-coverage", "no",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
            "--repl-diskless-sync-delay", "0",  # replicas sync at once (the default waits 5 s for more replicas)
            "--logfile", str(directory / f"{port}.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_port(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server on {port} did not start")


def cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of one node (empty when it does not answer)."""
    result = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True, timeout=5, check=False
    )
    return dict(line.strip().split(":", 1) for line in result.stdout.splitlines() if ":" in line)


def wait_cluster_ok(ports: list[int], seconds: float = 30) -> None:
    """Until every listed node reports the cluster up with all 16384 slots served."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        infos = [cluster_info(port) for port in ports]
        if all(i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384" for i in infos):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the Redis cluster is not ok after {seconds} s: {infos}")


@contextlib.contextmanager
def redis_cluster() -> Iterator[ClusterNodes]:
    """A fresh Redis Cluster: six nodes, three masters with one replica each, created with redis-cli."""
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        unavailable("Redis Cluster (redis-server and redis-cli)")
    directory = Path(tempfile.mkdtemp(prefix="hub-redis-cluster-"))
    ports: dict[int, int] = {}
    while len(ports) < CLUSTER_NODES:
        port, bus_port = free_port(), free_port()
        if port != bus_port and not {port, bus_port} & (set(ports) | set(ports.values())):
            ports[port] = bus_port
    nodes = ClusterNodes(ports, {}, directory)
    try:
        for port, bus_port in ports.items():
            nodes.processes[port] = _cluster_node(port, bus_port, directory)
        for port in ports:
            _wait_port(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports), *CREATE_OPTIONS],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_cluster_ok(list(ports))
        _wait_replicas_synced(list(ports))
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_replicas_synced(ports: list[int], seconds: float = 30) -> None:
    """Until every replica has its master's data: a replica that never synced cannot take over when its master
    dies (Redis's replica validity check), and a test that kills a master soon after creating the cluster would
    wait for a failover that never comes."""
    deadline = time.monotonic() + seconds
    for port in ports:
        with redis_sync.Redis(host="127.0.0.1", port=port, socket_timeout=2) as node:
            while True:
                info = node.info("replication")
                if info.get("role") != "slave" or (
                    info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the replica on {port} did not sync with its master in {seconds} s")
                time.sleep(0.05)


def sync_cluster_client(url: str) -> redis_sync.RedisCluster:
    """redis-py's (blocking) cluster client for a ``redis+cluster://`` URL, for test set-up and checks."""
    from hub.infra.cluster import parse_cluster_url

    address = parse_cluster_url(url)
    return redis_sync.RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        username=address.username,
        password=address.password,
        ssl=address.tls,
        require_full_coverage=False,
    )
