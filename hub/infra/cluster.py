"""Redis Cluster: the URL form, the redis-py cluster client, and pipelined commands sent to the masters directly.

``CARTSNITCH_REDIS_URL=redis+cluster://[user:password@]host:port[,host:port...][/]`` (``rediss+cluster://`` for TLS)
names a cluster by some of its nodes, as python-socketio's ``redis+sentinel://`` names sentinels; the rest are
discovered. Everything that is not on the event bus's hot path uses redis-py's ``RedisCluster``, which follows
MOVED and ASK, rides out a failover and refreshes its slot map.

The hot path (``ClusterCommands``: a batch of script calls, one per recorded event) does not, because redis-py
cannot do that job at the hub's rates. Measured on this project's 2-core machine against a local 3-master cluster:
500 record-script calls per batch cost 61 µs of client CPU per call through ``RedisCluster.pipeline()`` and 12 µs
through one raw connection per master (``hub.infra.resp``); a hub spends 100-140 µs per delivered event in all, so
redis-py would add about half again. ``ClusterCommands`` therefore groups a batch by the master that owns each key's
slot, in redis-py's own slot map, and writes each group on that master's raw connection. It implements none of the
cluster protocol: a call the cluster answers with a redirection or a cluster error (MOVED, ASK, TRYAGAIN,
CLUSTERDOWN, READONLY, …) did not run, and is run again through ``RedisCluster.execute_command``, whose handling of
the redirection also corrects the slot map the next batch is routed by. A call whose connection broke after it was
sent may or may not have run: it is run again the same way when it is idempotent (a dedupe key guards it), and
fails otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.crc import key_slot
from redis.exceptions import ClusterError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.infra.resp import CommandConnection, ReplyError, command

log = logging.getLogger("hub.cluster")

SCHEMES = ("redis+cluster", "rediss+cluster")
NOT_RUN = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "LOADING")
"""Error replies of a node that did not run the command (a redirection, or the node cannot serve the slot now)."""
FALLBACK_CONCURRENCY = 16
SETTLE_SECONDS = 10.0
SETTLE_FIRST = 0.05
SETTLE_CAP = 0.5
"""A call of a slot that is moving is tried again from 50 ms apart up to half a second apart, for up to 10 s."""


def is_cluster_url(url: str | None) -> bool:
    """True when ``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return bool(url) and url.split("://", 1)[0].lower() in SCHEMES  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """Where a cluster is and how to log in: its seed nodes, credentials and whether it speaks TLS."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def node_url(self, host: str, port: int) -> str:
        """A plain Redis URL of one node of the cluster, with the cluster's credentials."""
        auth = ""
        if self.password is not None:
            auth = (quote(self.username, safe="") if self.username else "") + ":" + quote(self.password, safe="") + "@"
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{port}/0"


def parse_cluster_url(url: str) -> ClusterAddress:
    """The seed nodes and credentials of a ``redis+cluster://`` URL; ValueError naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError("must start with redis+cluster:// or rediss+cluster://")
    netloc, _, path = rest.partition("/")
    path, _, _query = path.partition("?")
    if path not in ("", "0"):
        raise ValueError("a cluster has only database 0")
    credentials, _, hosts = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if credentials:
        user, has_password, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes = []
    for item in hosts.split(","):
        try:
            parsed = urlsplit("//" + item.strip())
            host, port = parsed.hostname, parsed.port
        except ValueError:
            host, port = None, None
        if not host or not port:
            raise ValueError(f"{item.strip() or 'an empty entry'} is not host:port")
        nodes.append((host, port))
    return ClusterAddress(tuple(nodes), username, password, scheme.lower() == "rediss+cluster")


def cluster_client(
    url: str, *, timeout: float, max_connections: int = 64, read_timeout: float | None = None, retries: int = 3
) -> RedisCluster:
    """redis-py's cluster client for ``url``: every command gives up after ``timeout`` (``read_timeout`` for the
    reply); a redirection, a broken connection or a cluster that is down is retried ``retries`` times with a short
    jittered back-off (from 50 ms, at most a second apart), the slot map refreshed in between."""
    address = parse_cluster_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        username=address.username,
        password=address.password,
        ssl=address.tls,
        require_full_coverage=False,  # the slots of a failed master are uncovered until its replica takes over
        max_connections=max_connections,
        socket_timeout=read_timeout or timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
    )


def is_not_run(reply: object) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith(NOT_RUN)


def is_noscript(reply: object) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")


def _sha(script: str) -> bytes:
    return hashlib.sha1(script.encode()).hexdigest().encode()  # noqa: S324 (Redis names scripts by SHA-1)


@dataclass(frozen=True, slots=True)
class KeyedCall:
    """One command of a batch: ``key`` decides its slot; ``idempotent`` says it may be sent twice (a dedupe key
    makes a repeat record nothing)."""

    key: bytes
    parts: tuple[bytes, ...]
    idempotent: bool = False


class ClusterCommands:
    """Batches of commands, each on a raw connection to the master of its key's slot (see the module docstring)."""

    def __init__(
        self,
        cluster: RedisCluster,
        address: ClusterAddress,
        scripts: Sequence[str],
        *,
        timeout: float,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.cluster = cluster
        self.address = address
        self.timeout = timeout
        self.settle_seconds = settle_seconds
        self._scripts = {_sha(script): script.encode() for script in scripts}
        self._connections: dict[str, CommandConnection] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._fallbacks = asyncio.Semaphore(FALLBACK_CONCURRENCY)

    async def execute(self, calls: Sequence[KeyedCall]) -> list[Any]:
        """The replies of ``calls`` in order (error replies as ReplyError values, a failure as the exception)."""
        if not calls:
            return []
        if not self.cluster.nodes_manager.slots_cache:
            await self.cluster.initialize()
        results: list[Any] = [None] * len(calls)
        groups: dict[str, list[int]] = {}
        again: list[int] = []
        for index, call in enumerate(calls):
            try:
                node = self.cluster.nodes_manager.get_node_from_slot(key_slot(call.key))
            except Exception:  # the slot is not covered now (a failover is under way): redis-py waits it out
                again.append(index)
                continue
            groups.setdefault(node.name, []).append(index)
        outcomes = await asyncio.gather(
            *(self._run_on(name, [calls[i] for i in indices]) for name, indices in groups.items())
        )
        for indices, (replies, sent) in zip(groups.values(), outcomes, strict=True):
            for index, reply in zip(indices, replies, strict=True):
                unknown = isinstance(reply, RedisConnectionError | RedisTimeoutError)
                if not sent or is_not_run(reply) or (unknown and calls[index].idempotent):
                    again.append(index)
                else:
                    results[index] = reply
        if again:
            log.info("%d of %d calls go through redis-py (redirected, or their master is gone)", len(again), len(calls))
            by_slot: dict[int, list[int]] = {}
            for index in sorted(again):
                by_slot.setdefault(key_slot(calls[index].key), []).append(index)

            async def in_order(indices: list[int]) -> None:
                # one slot's calls one after the other, as they were given: an audience's events keep their order
                for index in indices:
                    results[index] = await self._fallback(calls[index])

            await asyncio.gather(*(in_order(indices) for indices in by_slot.values()))
        return results

    async def _run_on(self, name: str, calls: list[KeyedCall]) -> tuple[list[Any], bool]:
        """(replies, whether they were sent): a connection that could not be opened sent nothing."""
        try:
            connection = await self._connection(name)
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            return [exc] * len(calls), False
        encoded = [command(*call.parts) for call in calls]
        try:
            replies = await connection.execute(encoded, self.timeout)
            missing = [i for i, reply in enumerate(replies) if is_noscript(reply)]
            if missing:
                # a node that never ran our scripts (a replica promoted by a failover): load them, run those again
                loads = [command(b"SCRIPT", b"LOAD", script) for script in self._scripts.values()]
                again = await connection.execute([*loads, *(encoded[i] for i in missing)], self.timeout)
                for index, reply in zip(missing, again[len(loads) :], strict=True):
                    replies[index] = reply
        except (RedisConnectionError, RedisTimeoutError) as exc:
            return [exc] * len(calls), True
        return replies, True

    async def _connection(self, name: str) -> CommandConnection:
        connection = self._connections.get(name)
        if connection is not None and not connection.closed:
            return connection
        lock = self._connecting.setdefault(name, asyncio.Lock())
        async with lock:
            connection = self._connections.get(name)
            if connection is None or connection.closed:
                host, _, port = name.rpartition(":")
                connection = await CommandConnection.connect(self.address.node_url(host, int(port)), self.timeout)
                self._connections[name] = connection
        return connection

    async def _fallback(self, call: KeyedCall) -> Any:
        """The call through redis-py's cluster client (a script by its body: a new master may not have it). While
        its slot is moving, a call of several keys is answered TRYAGAIN until the move ends (a slot of many keys
        takes seconds); it did not run, and is tried again for up to ``settle_seconds``."""
        parts: tuple[Any, ...] = (call.parts[0].decode(), *call.parts[1:])  # redis-py wants the name as str
        if parts[0] == "EVALSHA" and parts[1] in self._scripts:
            parts = ("EVAL", self._scripts[parts[1]], *parts[2:])
        deadline = time.monotonic() + self.settle_seconds
        delay = SETTLE_FIRST
        async with self._fallbacks:
            while True:
                try:
                    return await self.cluster.execute_command(*parts)
                except (TryAgainError, ClusterError, SlotNotCoveredError) as exc:
                    if time.monotonic() + delay > deadline:
                        return exc
                except Exception as exc:
                    return exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, SETTLE_CAP)

    def close(self) -> None:
        for connection in self._connections.values():
            with contextlib.suppress(Exception):
                connection.close()
        self._connections.clear()
